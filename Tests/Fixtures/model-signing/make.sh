#!/bin/sh
# Regenerates the model-signing fixtures with the real tool (PyPI model-signing 1.1.1).
# TEST-ONLY KEYS: every private key here is published in this repository; never trust anything signed with them.
# Usage: sh make.sh [path/to/model_signing]   (default /work/ms-venv/bin/model_signing)
set -eu
cd "$(dirname "$0")"
MS=${1:-/work/ms-venv/bin/model_signing}
"$MS" --version

# The model: three small files, one in a subfolder. Contents are fixed so digests stay stable.
rm -rf model
mkdir -p model/sub
printf '{"architectures": ["TinyModel"], "hidden_size": 8}\n' > model/config.json
printf 'airlock test weights 0123456789abcdef\000\001\002\003\377\376\375\374\n' > model/weights.bin
printf 'hello\nworld\n<unk>\n' > model/sub/tokenizer.txt
printf 'a single-file model for airlock tests\n' > single.bin

# Keys (only made when missing, so bundles can be re-made with the same keys).
[ -f key.pem ] || openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out key.pem
[ -f other.pem ] || openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out other.pem
[ -f p384.pem ] || openssl ecparam -name secp384r1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out p384.pem
[ -f p521.pem ] || openssl ecparam -name secp521r1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out p521.pem
for k in key other p384 p521; do openssl pkey -in $k.pem -pubout -out $k.pub; done
# A public key on an EC curve model-signing does not accept, and one that is not EC, for the "unsupported key" tests.
[ -f secp256k1.pub ] || openssl ecparam -name secp256k1 -genkey -noout | openssl pkey -pubout -out secp256k1.pub
[ -f rsa.pub ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 2>/dev/null | openssl pkey -pubout -out rsa.pub

# Bundles made with `model_signing sign key` (signature files live outside model/, as the tests read them).
"$MS" sign key --private_key key.pem --signature model.sig model
"$MS" sign key --private_key other.pem --signature other.sig model
"$MS" sign key --private_key p384.pem --signature p384.sig model
"$MS" sign key --private_key p521.pem --signature p521.sig model
"$MS" sign key --private_key key.pem --signature single.sig single.bin

# A certificate-method bundle: a throwaway CA and a leaf certificate for key.pem.
[ -f ca.pem ] || openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out ca-key.pem
if [ ! -f ca.pem ]; then
    openssl req -x509 -new -key ca-key.pem -subj "/CN=airlock test CA (throwaway)" -days 36500 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" -out ca.pem
fi
if [ ! -f cert.pem ]; then
    openssl req -new -key key.pem -subj "/CN=airlock test signer (throwaway)" -out cert.csr
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n' > cert.ext
    openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 36500 -extfile cert.ext -out cert.pem
    rm -f cert.csr cert.ext ca.srl
fi
"$MS" sign certificate --private_key key.pem --signing_certificate cert.pem --certificate_chain ca.pem --signature cert.sig model

# A bundle signed the way model-signing 0.2 did (its own pae_compat, pre-1.0 verification material), which 1.1.1 accepts.
"$(dirname "$MS")/python" make-compat.py

# The real tool must accept what it made (a check on this script, not on Airlock).
"$MS" verify key --public_key key.pub --signature model.sig model
"$MS" verify key --public_key p384.pub --signature p384.sig model
"$MS" verify key --public_key p521.pub --signature p521.sig model
"$MS" verify key --public_key key.pub --signature single.sig single.bin
"$MS" verify key --public_key key.pub --signature compat.sig model
