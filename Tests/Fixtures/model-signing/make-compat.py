"""Writes compat.sig: model.sig's statement re-signed the way model-signing 0.2 did (its `pae_compat`, which signs
"DSSEV1 ... b'<python repr of the payload>'"), with the pre-1.0 verification material (publicKey.rawBytes and keyDetails,
no hint). model-signing 1.1.1 still accepts such bundles; this uses its own pae_compat so the bytes signed are exactly
what it verifies. TEST-ONLY KEY."""
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing._signing import sign_sigstore_pb

bundle = json.load(open("model.sig"))
payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
key = serialization.load_pem_private_key(open("key.pem", "rb").read(), None)
sig = key.sign(sign_sigstore_pb.pae_compat(payload), ec.ECDSA(hashes.SHA256()))
spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
bundle["verificationMaterial"] = {
    "publicKey": {"rawBytes": base64.b64encode(spki).decode(), "keyDetails": "PKIX_ECDSA_P256_SHA_256"},
    "tlogEntries": [],
}
bundle["dsseEnvelope"]["signatures"] = [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]
open("compat.sig", "w").write(json.dumps(bundle, separators=(",", ":")))
