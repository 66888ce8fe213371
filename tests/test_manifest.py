"""The bundled manifest is valid and complete; broken manifests give errors naming model and field."""

from __future__ import annotations

import copy
import json

import pytest

from dsd_zoo.digests import Digest
from dsd_zoo.errors import ManifestError
from dsd_zoo.manifest import bundled_manifest_path, load_manifest, parse_manifest

from .conftest import REPO_ROOT

# The 13 names of issue 2 and their kinds.
EXPECTED = {
    "alexnet_dsd": "dsd",
    "vgg16_dsd": "dsd",
    "googlenet_dsd": "dsd",
    "squeezenet_dsd": "dsd",
    "resnet18_dsd": "dsd",
    "resnet50_dsd": "dsd",
    "alexnet_caffe": "baseline",
    "vgg16_caffe": "baseline",
    "googlenet_caffe": "baseline",
    "squeezenet_caffe": "baseline",
    "resnet18_fb": "baseline",
    "resnet50_fb": "baseline",
    "squeezenet_sparse": "sparse",
}
# The embedded zoo of issue 6 (docs/dsd-demo.md), shipped inside the package.
EMBEDDED = {"digits_baseline": "baseline", "digits_sparse": "sparse", "digits_dsd": "dsd"}


@pytest.fixture
def document():
    return json.loads((REPO_ROOT / "weights_manifest.json").read_text())


def test_bundled_manifest_has_the_13_models_and_the_embedded_zoo(isolated_cache):
    manifest = load_manifest()
    assert {name: e.kind for name, e in manifest.models.items()} == {**EXPECTED, **EMBEDDED}
    for name in EMBEDDED:
        entry = manifest.models[name]
        assert entry.weights.local and entry.weights.sha256 and entry.fingerprint and entry.evaluation


def test_embedded_files_are_pinned_and_shipped(isolated_cache):
    import hashlib

    from dsd_zoo.records import shipped_file

    manifest = load_manifest()
    records = [(e.weights.local, e.weights.sha256, e.weights.size) for n, e in manifest.models.items() if n in EMBEDDED]
    asset = manifest.assets["digits_test"]
    records.append((asset.record.local, asset.record.sha256, asset.record.size))
    for local, sha256, size in records:
        data = shipped_file(local).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha256, local
        assert size < 2**20  # issue 6: each under 1 MB


def test_published_digests_are_recorded(isolated_cache):
    # Digests given by their publishers (issue 3, item 2).
    models = load_manifest().models
    assert models["alexnet_caffe"].original.digest == Digest("sha1", "9116a64c0fbe4459d18f4bb6b56d647b63920377")
    assert models["googlenet_caffe"].original.digest == Digest("sha1", "405fc5acd08a3bb12de8ee5e23a96bec22f08204")
    assert models["squeezenet_caffe"].original.digest == Digest(
        "git_blob_sha1", "a381d848b43d7048c3b362238ece2386c21d6ff0"
    )
    assert models["squeezenet_dsd"].original.digest == Digest(
        "git_blob_sha1", "ffce3635e4a837e7bc783fea3f48fcc48a1e93a6"
    )
    sparse = models["squeezenet_sparse"].original
    assert sparse.digest == Digest("git_blob_sha1", "b28ec20a342c1f0dd7f0c148be60df1192ff8036")
    assert sparse.record.size == 675_763
    for name in ("alexnet_dsd", "vgg16_dsd", "googlenet_dsd", "resnet18_dsd", "resnet50_dsd"):
        assert models[name].original.url.startswith("https://1drv.ms/") and models[name].original.digest is None


def test_paper_numbers_match_the_release_table(isolated_cache):
    # DSD release README table (architectures.md section 6).
    table = {
        "alexnet": (41.48, 18.71, 42.78, 19.73),
        "vgg16": (27.19, 8.67, 31.50, 11.32),
        "googlenet": (30.02, 10.34, 31.14, 10.96),
        "squeezenet": (38.24, 16.53, 42.56, 19.52),
        "resnet18": (29.17, 10.13, 30.43, 10.76),
        "resnet50": (22.89, 6.47, 24.01, 7.02),
    }
    models = load_manifest().models
    for family, (d1, d5, b1, b5) in table.items():
        baseline = f"{family}_fb" if family.startswith("resnet") else f"{family}_caffe"
        assert (models[f"{family}_dsd"].paper_top1_err, models[f"{family}_dsd"].paper_top5_err) == (d1, d5)
        assert (models[baseline].paper_top1_err, models[baseline].paper_top5_err) == (b1, b5)


def test_logged_head_errors_are_the_accuracy_logs(isolated_cache):
    # GoogleNet/accuracy.log of the DSD release (architectures.md section 6): loss1/top-1 0.57394,
    # loss1/top-5 0.813562, loss2/top-1 0.6422, loss2/top-5 0.863062; error = 100 x (1 - accuracy).
    from dsd_zoo.models import ARCHITECTURES

    models = load_manifest().models
    heads = models["googlenet_dsd"].heads
    logged = {"loss1": (42.606, 18.6438), "loss2": (35.78, 13.6938)}
    assert set(heads) == set(logged)
    for head, (top1_err, top5_err) in logged.items():
        assert (heads[head]["top1_err"], heads[head]["top5_err"]) == pytest.approx((top1_err, top5_err)), head
    for name, entry in models.items():  # every logged head is one the architecture can evaluate
        assert set(entry.heads) <= set(ARCHITECTURES[entry.arch].heads), name


def test_manifest_env_replaces_the_bundled_one(tmp_path, monkeypatch, document):
    document["models"] = {"squeezenet_sparse": document["models"]["squeezenet_sparse"]}
    path = tmp_path / "mirror.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv("DSD_ZOO_MANIFEST", str(path))
    assert list(load_manifest().models) == ["squeezenet_sparse"]


def test_missing_manifest_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("DSD_ZOO_MANIFEST", str(tmp_path / "nope.json"))
    with pytest.raises(ManifestError, match="nope.json.*DSD_ZOO_MANIFEST"):
        load_manifest()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format=2), "format"),
        (lambda d: d["models"]["alexnet_dsd"].update(kind="dense"), r"'alexnet_dsd'\.kind"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(sha256="abc"), r"'vgg16_dsd'\.weights\.sha256"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(size=-1), r"'vgg16_dsd'\.weights\.size"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(file="../../etc/passwd"), r"weights\.file"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(urls=["ftp://x"]), r"urls\[0\]"),
        (
            lambda d: d["models"]["vgg16_dsd"]["weights"].update(
                hf={"repo_id": "a/b", "revision": "main", "filename": "f"}
            ),
            r"hf\.revision",
        ),
        (
            lambda d: d["models"]["alexnet_caffe"]["original"].update(digest={"md5": "0" * 32}),
            "unknown digest algorithm",
        ),
        (lambda d: d["models"]["alexnet_caffe"]["original"].update(format="onnx"), r"original\.format"),
        (lambda d: d["models"]["resnet18_fb"]["transforms"].update(std=[0, 1, 1]), r"transforms\.std"),
        (lambda d: d["models"]["googlenet_dsd"]["metrics"]["paper"].update(top1_err=130), "top1_err"),
        (lambda d: d["models"]["googlenet_dsd"].update(citation=["nobody"]), "nobody"),
        (lambda d: d["models"]["googlenet_dsd"].pop("weights"), r"'googlenet_dsd'\.weights"),
        (lambda d: d["models"]["digits_dsd"]["weights"].update(sha256=None), r"shipped with the package"),
        (lambda d: d["models"]["digits_dsd"]["weights"].update(local="../../x"), r"weights\.local"),
        (lambda d: d["models"]["digits_dsd"]["evaluation"].update(data="nope"), r"evaluation\.data"),
        (lambda d: d["models"]["digits_dsd"]["metrics"]["recorded"].update(top1_err=-1), r"recorded\.top1_err"),
        (lambda d: d["assets"]["digits_test"].pop("local"), r"asset 'digits_test'"),
        (lambda d: d["assets"]["digits_test"].update(digest=None), r"asset 'digits_test'\.digest: .*sha256 pinned"),
        # An asset's original is the publisher's file it was derived from, not a model's format.
        (
            lambda d: d["assets"]["ilsvrc_2012_mean"]["original"].update(format="caffemodel"),
            r"asset 'ilsvrc_2012_mean'\.original\.format: must be one of \('npy',\)",
        ),
        (
            lambda d: d["assets"]["ilsvrc_2012_mean"]["original"].update(digest={"git_blob_sha1": "666"}),
            r"asset 'ilsvrc_2012_mean'\.original\.digest\.git_blob_sha1",
        ),
        # Each of these used to pass validation and fail later, at download time, with a raw error.
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(urls=["file:///srv/w.safetensors"]), r"urls\[0\]"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(urls=["https://"]), r"urls\[0\]"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(file="w.safetensors\n"), r"weights\.file"),
        (
            lambda d: d["models"]["alexnet_caffe"]["original"].update(digest={"sha256_prefix": "deadbeef\n"}),
            r"original\.digest\.sha256_prefix",
        ),
        (
            lambda d: d["models"]["vgg16_dsd"]["weights"].update(
                hf={"repo_id": "", "revision": "0" * 40, "filename": "f"}
            ),
            r"hf\.repo_id",
        ),
        (
            lambda d: d["models"]["vgg16_dsd"]["weights"].update(
                hf={"repo_id": "a/b", "revision": "0" * 40 + "\n", "filename": "f"}
            ),
            r"hf\.revision",
        ),
        (lambda d: d["models"].update({"vgg16\n": d["models"]["vgg16_dsd"]}), "lower-case identifiers"),
        (lambda d: d["models"]["vgg16_dsd"]["transforms"].update(crop=-224), r"transforms\.crop"),
        (lambda d: d["models"]["digits_dsd"]["weights"].update(local="C:/digits_dsd.safetensors"), r"weights\.local"),
        (lambda d: d["models"]["digits_dsd"]["weights"].update(local="..\\x.safetensors"), r"weights\.local"),
        # ... and these raised TypeError or ValueError instead of naming the field.
        (lambda d: d["models"]["googlenet_dsd"].update(citation=[["dsd"]]), r"'googlenet_dsd'\.citation"),
        (lambda d: d["models"]["alexnet_dsd"]["transforms"].update(mean_image=["x"]), r"transforms\.mean_image"),
        (
            lambda d: d["models"]["digits_dsd"]["fingerprint"].update(values=["a"] * 5, indices=list(range(5))),
            r"'digits_dsd'\.fingerprint",
        ),
        (lambda d: d["models"]["googlenet_dsd"].update(metrics=None), r"'googlenet_dsd'\.metrics: missing"),
        (
            lambda d: d["models"]["googlenet_dsd"]["metrics"]["heads"]["loss1"].update(top5_err=101),
            r"metrics\.heads\.loss1\.top5_err",
        ),
        (lambda d: d["models"]["googlenet_dsd"]["metrics"]["heads"]["loss2"].pop("source"), r"metrics\.heads\.loss2"),
        (lambda d: d["models"]["googlenet_dsd"]["metrics"]["heads"].update(loss3=[]), r"metrics\.heads\.loss3"),
        # Found by a review: each was accepted, and some changed what is checked without a word.
        (
            lambda d: d["models"]["vgg16_caffe"]["weights"].update(sha265="0" * 64),
            r"'vgg16_caffe'\.weights: unknown field\(s\) 'sha265' \(did you mean 'sha256'\?\)",
        ),
        (
            lambda d: d["models"]["digits_dsd"]["fingerprint"].update(bogus=1),
            r"'digits_dsd'\.fingerprint: unknown field",
        ),
        (lambda d: d["models"]["resnet18_fb"]["transforms"].update(mean_rgb=[0, 0, 0]), r"transforms: unknown field"),
        (lambda d: d.update(extra={}), r"top level: unknown field\(s\) 'extra'"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(urls=["https://[mirror.example/x"]), r"urls\[0\]"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(urls=["https://mirror.example:99999/x"]), r"urls\[0\]"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(urls=["https://mirror.example/a b"]), r"urls\[0\]"),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(file="vgg16.lock"), r"weights\.file: ends in"),
        (
            lambda d: d["models"]["vgg16_dsd"]["weights"].update(file="nul.safetensors"),
            r"weights\.file: is a Windows device",
        ),
        (lambda d: d["models"]["vgg16_dsd"]["weights"].update(file="vgg16."), r"weights\.file: ends in '\.'"),
        (
            lambda d: d["models"]["digits_sparse"]["weights"].update(file="digits_dsd.safetensors"),
            r"its file 'digits_dsd.safetensors' is also the file of model 'digits_(dsd|sparse)'",
        ),
        (lambda d: d["models"]["digits_dsd"]["fingerprint"].update(atol=0), r"fingerprint\.atol: must be > 0"),
        (lambda d: d["models"]["digits_dsd"]["fingerprint"].update(argmax=-1), r"fingerprint\.argmax"),
        (lambda d: d["models"]["digits_dsd"]["fingerprint"].update(indices=[], values=[]), r"non-empty"),
        (lambda d: d.update(format=True), "format"),
        (lambda d: d.update(format=1.0), "format"),
    ],
)
def test_invalid_manifests_name_model_and_field(document, mutate, message):
    broken = copy.deepcopy(document)
    mutate(broken)
    with pytest.raises(ManifestError, match=message):
        parse_manifest(broken, origin="test.json")


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b'{"format": ' + b"1" * 5000 + b"}",
        # A repeated key kept the last value silently; NaN, Infinity and 1e999
        # (infinity once parsed) loaded as numbers, e.g. an atol that passes anything.
        b'{"format": 1, "format": 1}',
        b'{"format": NaN}',
        b'{"format": Infinity}',
        b'{"format": 1e999}',
    ],
)
def test_json_that_python_refuses_is_a_manifest_error(tmp_path, monkeypatch, raw):
    # Deeper than Python's recursion limit; an integer past its digit limit: not RecursionError/ValueError.
    path = tmp_path / "hostile.json"
    path.write_bytes(raw)
    with pytest.raises(ManifestError, match="hostile.json: not valid JSON"):
        load_manifest(str(path))


def test_one_copy_in_git_reachable_from_the_package():
    # The package's copy is a symlink to the root file (one copy in git); wheels get a real file.
    packaged = REPO_ROOT / "dsd_zoo" / "weights_manifest.json"
    assert packaged.is_symlink() and packaged.resolve() == (REPO_ROOT / "weights_manifest.json").resolve()
    assert bundled_manifest_path() == REPO_ROOT / "weights_manifest.json"


def test_a_manifest_path_that_is_not_a_plain_file_of_sane_size(tmp_path):
    with pytest.raises(ManifestError, match="is not a regular file"):
        load_manifest("/dev/zero")
    big = tmp_path / "big.json"
    with open(big, "wb") as file:
        file.truncate(17 * 2**20)  # sparse: no disk used
    with pytest.raises(ManifestError, match="over 16777216"):
        load_manifest(str(big))


@pytest.mark.parametrize(
    "url", ["https://example.org/squeezenet_v1.0..caffemodel", "https://example.org/download.php?file=squeezenet."]
)
def test_an_original_url_becomes_a_valid_cache_name(document, url):
    document["models"]["squeezenet_caffe"]["original"]["url"] = url
    # The record applies the cache's name rule; this used to raise ValueError.
    name = parse_manifest(document).models["squeezenet_caffe"].original.record.file
    assert ".." not in name and not name.endswith(".")
