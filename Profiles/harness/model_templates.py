"""GGUF chat templates, rendered as the model's consumers render them (the `gguf` loader of model_loader).

The template is read from the model's own bytes (the descriptor the caller passed), by a small bounded reader of
GGUF metadata (versions 1-3, little-endian): `tokenizer.chat_template` and every `tokenizer.chat_template.<name>`,
and the BOS/EOS tokens. Then, for each template:

1. as transformers renders chat templates: `jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True,
   lstrip_blocks=True)`; a `template-sandbox` line says whether Jinja's sandbox refused it (SecurityError), before
   anything unrestricted runs (the first such lines are the loader's);
2. as llama-cpp-python's Jinja2ChatFormatter rendered them before 0.2.72 (CVE-2024-34359): a plain
   `jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True)`, with `messages`,
   `add_generation_prompt=True`, `bos_token`, `eos_token`, `raise_exception`, `strftime_now` and the tool arguments.
   A template that escapes Jinja's namespace acts here, where the container sees it.

Returns {key: rendered prompt}. An exception a template raises on purpose (raise_exception, a role it refuses) is
kept as that template's result; anything harsher (SystemExit, MemoryError) propagates as from any loader.
"""
import struct

MAX_KEY = 1 << 16
MAX_STRING = 64 << 20
MAX_ITEMS = 1 << 24
MAX_TOKENS_KEPT = 1 << 20
MAX_DEPTH = 8
FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
MESSAGES = [
    {"role": "user", "content": "Hello! What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Italy?"},
]


class GGUFError(ValueError):
    pass


class Reader:
    def __init__(self, f):
        self.f = f
        self.wide = True

    def take(self, n):
        data = self.f.read(n)
        if len(data) != n:
            raise GGUFError("the file ends inside its metadata")
        return data

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def count(self):
        return struct.unpack("<Q", self.take(8))[0] if self.wide else self.u32()

    def string(self, limit=MAX_STRING):
        n = self.count()
        if n > limit:
            raise GGUFError(f"a metadata string of {n} bytes")
        return self.take(n)

    def skip(self, n):
        self.f.seek(n, 1)

    def value(self, kind, keep):
        """Reads (keep) or skips one value of `kind`; arrays of arrays with an explicit stack."""
        if kind in FIXED:
            data = self.take(FIXED[kind])
            return struct.unpack({1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[FIXED[kind]], data)[0] if keep else None
        if kind == 8:
            s = self.string()
            return s if keep else None
        if kind != 9:
            raise GGUFError(f"unknown value type {kind}")
        stack, out = [[self.u32(), self.count()]], []
        while stack:
            top = stack[-1]
            element, n = top
            if n == 0:
                stack.pop()
            elif n > MAX_ITEMS:
                raise GGUFError(f"an array of {n} elements")
            elif element in FIXED:
                self.skip(FIXED[element] * n)
                top[1] = 0
            elif element == 8:
                s = self.string()
                top[1] -= 1
                if keep and len(stack) == 1 and len(out) < MAX_TOKENS_KEPT:
                    out.append(s)
            elif element == 9:
                top[1] -= 1
                if len(stack) >= MAX_DEPTH:
                    raise GGUFError("arrays nest too deep")
                stack.append([self.u32(), self.count()])
            else:
                raise GGUFError(f"unknown array element type {element}")
        return out if keep else None


def metadata(f):
    """The chat templates (key, text) and the BOS/EOS token texts, read from the GGUF file `f`."""
    r = Reader(f)
    if r.take(4) != b"GGUF":
        raise GGUFError("not a GGUF file")
    version = r.u32()
    if version not in (1, 2, 3):
        raise GGUFError(f"GGUF version {version}")
    r.wide = version >= 2
    r.count()  # tensors
    kvs = r.count()
    templates, tokens, ids = [], [], {}
    for _ in range(min(kvs, MAX_ITEMS)):
        key = r.string(MAX_KEY).decode("utf-8", "replace")
        kind = r.u32()
        wanted = key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template.") \
            or key == "tokenizer.ggml.tokens" or key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")
        v = r.value(kind, wanted)
        if not wanted:
            continue
        if key == "tokenizer.ggml.tokens" and isinstance(v, list):
            tokens = v
        elif key.endswith("_token_id") and isinstance(v, int):
            ids[key] = v
        elif isinstance(v, bytes):
            templates.append((key, v.decode("utf-8")))

    def token(key):
        i = ids.get(key)
        return tokens[i].decode("utf-8", "replace") if i is not None and 0 <= i < len(tokens) else ""

    return templates, token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")


def raise_exception(message):
    raise ValueError(message)


def strftime_now(fmt):
    import datetime
    return datetime.datetime.now().strftime(fmt)


def render(jinja2, env, text, bos, eos):
    return env.from_string(text).render(
        messages=MESSAGES, eos_token=eos, bos_token=bos, raise_exception=raise_exception,
        add_generation_prompt=True, functions=None, function_call=None, tools=None, tool_choice=None,
        strftime_now=strftime_now)


def load(f, say, real):
    templates, bos, eos = metadata(f)
    if not templates:
        raise GGUFError("the file holds no chat template")
    jinja2 = real("jinja2")
    if jinja2 is None:
        raise ImportError("jinja2 is not installed in this Python environment: the template cannot be rendered")
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
    restricted = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    for key, text in templates:
        try:
            render(jinja2, restricted, text, bos, eos)
            say("template-sandbox", f"accepted {key}")
        except SecurityError as e:
            say("template-sandbox", f"refused {key} SecurityError: {str(e)[:200]}")
        except Exception as e:
            say("template-sandbox", f"raised {key} {type(e).__name__}: {str(e)[:200]}")
    out = {}
    for key, text in templates:
        env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True)
        try:
            out[key] = render(jinja2, env, text, bos, eos)
        except Exception as e:  # a template's own exception: its answer for these messages
            out[key] = f"{type(e).__name__}: {str(e)[:200]}"
    return out
