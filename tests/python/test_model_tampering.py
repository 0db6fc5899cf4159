"""Model bytes altered and re-checksummed (so they pass the sha256) load as a working predictor or
raise keel.Corrupt, never a UnicodeDecodeError, JSONDecodeError, TypeError or AttributeError
(issue 10, item 10). The mutations target the metadata JSON and the string entries, where Python
reads the decoded record, as well as random bytes anywhere in the body."""
import hashlib
import pickle
import random
import struct

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder

import keel
from keel.inference import FactorizationModel, convert, load_predictor

HEADER = 8 + 4 + 4 + 8 + 64  # magic, version, reserved, body size, sha256 hex


def reseal(body: bytes) -> bytes:
    """A well-formed header (KEELPRED, version 1, size, sha256) around any body."""
    return (b"KEELPRED" + struct.pack("<IIQ", 1, 0, len(body)) + hashlib.sha256(body).hexdigest().encode()
            + body)


def entries(body: bytes):
    """(key, type, start, end of payload) of each record entry, to aim mutations at strings."""
    pos, out = 4, []
    (count,) = struct.unpack_from("<I", body, 0)
    for _ in range(count):
        (klen,) = struct.unpack_from("<H", body, pos)
        key = body[pos + 2:pos + 2 + klen].decode()
        pos += 2 + klen
        kind, n = body[pos], struct.unpack_from("<Q", body, pos + 1)[0]
        pos += 9
        start = pos
        if kind in (1, 2):
            pos += 8 * n
        else:
            for _ in range(n):
                (size,) = struct.unpack_from("<Q", body, pos)
                pos += 8 + size
        out.append((key, kind, start, pos))
    return out


def with_metadata(data: bytes, meta_text: bytes) -> bytes:
    """The model with its metadata string replaced by arbitrary bytes, re-sealed."""
    body = data[HEADER:]
    for key, _kind, start, end in entries(body):
        if key == "metadata":
            new = struct.pack("<Q", 1) + struct.pack("<Q", len(meta_text)) + meta_text
            # the count field sits 8 bytes before the payload start
            return reseal(body[:start - 8] + new + body[end:])
    raise AssertionError("no metadata entry")


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame({"region": rng.choice(["eu", "na", "apac"], size=n), "spend": rng.exponential(20, size=n)})
    y = ((df["region"] == "eu") ^ (df["spend"] > 20)).astype(int)
    ct = ColumnTransformer([("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                             ["region"])], remainder="passthrough")
    X = rng.normal(size=(200, 4))
    out = {
        "pipeline": (convert(make_pipeline(ct, LogisticRegression()).fit(df, y)), df.iloc[:5]),
        "forest": (convert(RandomForestClassifier(5, max_depth=4, random_state=0).fit(X, X[:, 0] > 0)), X[:5]),
        "recommender": (FactorizationModel(rng.normal(size=(4, 3)), rng.normal(size=(7, 3)),
                                           user_ids=["a", "b", "c", "d"], item_ids=list(range(100, 107))), None),
    }
    return {k: (p.to_bytes(), x) for k, (p, x) in out.items()}


def exercise(p, x):
    """What a user does right after loading: look at it and predict."""
    repr(p)
    p._repr_html_()
    _ = p.signature, p.feature_names, p.source, p.n_features
    if p.task == "factorization":
        p.recommend(["a", "b"], k=3)
    else:
        p.predict(x)


def load_or_corrupt(data: bytes, x):
    try:
        p = load_predictor(data)
    except keel.Corrupt:
        return "corrupt"
    try:
        exercise(p, x)
    except keel.KeelError:
        return "keel-error"
    return "loaded"


@pytest.mark.parametrize("name", ["pipeline", "forest", "recommender"])
def test_random_body_mutations_load_or_raise_corrupt(models, name):
    data, x = models[name]
    body = data[HEADER:]
    rng = random.Random(f"tamper-{name}")
    seen = set()
    for _ in range(400):
        b = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            i = rng.randrange(len(b))
            if op < 0.6:
                b[i] = rng.randrange(256)
            elif op < 0.8:
                del b[i:i + rng.randint(1, 16)]
            else:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        seen.add(load_or_corrupt(reseal(bytes(b)), x))
    assert "corrupt" in seen


@pytest.mark.parametrize("name", ["pipeline", "forest", "recommender"])
def test_mutated_strings_and_metadata_load_or_raise_corrupt(models, name):
    data, x = models[name]
    body = data[HEADER:]
    strings = [(s, e) for key, kind, s, e in entries(body) if kind == 3]
    rng = random.Random(f"strings-{name}")
    for _ in range(400):
        start, end = rng.choice(strings)
        b = bytearray(body)
        # Inside a string payload: skip the 8-byte size fields by aiming at printable bytes.
        spots = [i for i in range(start, end) if 32 <= b[i] < 127]
        if not spots:
            continue
        for _ in range(rng.randint(1, 3)):
            b[rng.choice(spots)] = rng.choice(b'{}[]":,0123456789abcxyz \xff\xc3\x80\x00')
        load_or_corrupt(reseal(bytes(b)), x)


@pytest.mark.parametrize("meta", [
    b"not json", b"\xff\xfe", b"[1, 2]", b"null", b'"text"', b'{"classes": 5}', b'{"classes": [[1], {}]}',
    b'{"classes": ["only-one"]}', b'{"source": 3}', b'{"vocabularies": []}', b'{"vocabularies": {"region": 1}}',
    b'{"vocabularies": {"region": {"labels": 5}}}', b'{"vocabularies": {"region": {"labels": [], "unknown": 2}}}',
    b'{"item_ids": {"a": 1}}', b'{"item_ids": [1, 2]}', b'{"user_ids": 7}',
    pytest.param(b"[" * 100000, id="deeply-nested"),
])
def test_malformed_metadata_is_corrupt(models, meta):
    for name, (data, x) in models.items():
        result = load_or_corrupt(with_metadata(data, meta), x)
        assert result in ("corrupt", "loaded", "keel-error"), (name, meta)
    # The classifier's metadata must name its classes: these are refused at load.
    if meta in (b"not json", b"\xff\xfe", b"[1, 2]", b'{"classes": 5}', b'{"classes": ["only-one"]}'):
        with pytest.raises(keel.Corrupt):
            load_predictor(with_metadata(models["forest"][0], meta))


def test_registry_load_of_tampered_native_model_is_corrupt(ws, models):
    data, _ = models["forest"]
    bad = with_metadata(data, b'{"classes": {"x": 1}}')
    mv = ws.models.register("churn", bad, flavour="keel-native")
    with pytest.raises(keel.Corrupt, match="metadata is malformed"):
        ws.models.load(mv.ref)
    with pytest.raises(keel.Corrupt):
        pickle.loads(pickle.dumps(load_predictor(data)).replace(b'"classes"', b'"klasses"'))
