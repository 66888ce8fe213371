"""``python -m dsd_zoo.release``: originals fetched from loopback servers -> released folders and manifests.

Everything runs for real: the originals come over HTTP from :class:`tests.servers.LoopbackServer`
through the delivery layer (digest checked), the converter and the loader are the package's,
the CLI entry point runs in-process. The upload tests point the real ``huggingface_hub`` client
(``HfApi.create_repo`` / ``HfApi.upload_folder``) at :class:`HubServer` below, a loopback server
of the Hub endpoints it calls, and then download the committed file back through the Hub
resolve endpoint with ``dsd_zoo.get_model``.

Two files are released: the real Deep Compression SqueezeNet from ``../shared/fixtures`` (skipped
when absent) and a ``squeezenet_caffe`` caffemodel written by ``tests/formats/caffe_writer.py``
from a random model, which makes the round trip exact.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Dict, List, Tuple
from urllib.parse import unquote, urlsplit

import pytest
import torch

import dsd_zoo
from dsd_zoo import release
from dsd_zoo.errors import IntegrityError
from dsd_zoo.fingerprint import check_fingerprint
from dsd_zoo.loading import build_with_weights, load_tensors
from dsd_zoo.manifest import bundled_manifest_path, load_manifest, parse_manifest
from dsd_zoo.model_card import ReleaseFacts, hf_license, render_model_card
from dsd_zoo.models import ARCHITECTURES

from .conftest import FIXTURES
from .formats.caffe_writer import encode_caffemodel
from .servers import Fault, LoopbackServer, LoopbackService, isolate_download_env
from .test_convert_mapping import SQUEEZENET_DEEPSCALE, assert_same_model, caffe_blobs, input_scale, perturb

SPARSE_NET = FIXTURES / "squeezenet-deep-compression" / "compressed_SqueezeNet.net"
TOKEN = "hf_loopback_test_token"


def git_blob_sha1(data: bytes) -> str:
    """The digest GitHub shows for a file: sha1 of ``b"blob <size>\\0" + content`` (git's object id)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_manifest(path: Path, originals: Dict[str, Dict[str, Any]]) -> Path:
    """The bundled manifest reduced to the models in ``originals``, whose ``original`` fields are replaced."""
    document = json.loads(bundled_manifest_path().read_text(encoding="utf-8"))
    document["models"] = {
        name: {**document["models"][name], "original": {**document["models"][name]["original"], **fields}}
        for name, fields in originals.items()
    }
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def front_matter(card: str) -> Dict[str, Any]:
    """The YAML between the card's leading ``---`` lines."""
    import yaml  # huggingface_hub depends on PyYAML

    match = re.match(r"^---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, "the card does not start with YAML front matter"
    return yaml.safe_load(match.group(1))


def run(tmp_path: Path, *args: str) -> int:
    return release.main(["--out", str(tmp_path / "out"), "--no-progress", *args])


def leftovers(out: Path) -> List[str]:
    """Temporary files or folders the tool left in the release directory."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.exists() else []


# -- the environment ----------------------------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A private cache, fast retries, no manifest override and no real Hub token."""
    isolate_download_env(monkeypatch, tmp_path)
    for name in ("DSD_ZOO_MANIFEST", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def origin():
    """The loopback server that plays the publishers' download sites and the mirrors."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture(scope="module")
def caffe_original() -> Tuple[bytes, torch.nn.Module]:
    """A SqueezeNet v1.0 caffemodel in forresti/SqueezeNet's layer names, and the model it was written from."""
    reference = perturb(ARCHITECTURES["squeezenet1_0"].build(), seed=3)
    return encode_caffemodel(caffe_blobs(reference, SQUEEZENET_DEEPSCALE), layout="new"), reference


@pytest.fixture
def caffe_manifest(env, tmp_path, origin, caffe_original) -> Path:
    """A manifest whose squeezenet_caffe original is the synthetic file, served with its true git blob sha1."""
    data, _ = caffe_original
    url = origin.add(f"/forresti/{tmp_path.name}/squeezenet_v1.0.caffemodel", data)
    path = write_manifest(
        tmp_path / "manifest.json",
        {"squeezenet_caffe": {"url": url, "digest": {"git_blob_sha1": git_blob_sha1(data)}, "size": len(data)}},
    )
    env.setenv("DSD_ZOO_MANIFEST", str(path))
    return path


# -- the real Deep Compression SqueezeNet, released once for the module ------------------------------------------


@pytest.fixture(scope="module")
def sparse_release(tmp_path_factory, origin):
    """Release the real compressed_SqueezeNet.net served by ``origin``; the CLI's outputs and its log."""
    if not SPARSE_NET.exists():
        pytest.skip(
            f"real fixture {SPARSE_NET} is absent (it lives in ../shared, not in this repository); "
            "set DSD_ZOO_SHARED to the folder that holds fixtures/"
        )
    tmp = tmp_path_factory.mktemp("sparse")
    data = SPARSE_NET.read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        isolate_download_env(patch, tmp)
        patch.delenv("DSD_ZOO_TRUST_UNVERIFIED", raising=False)
        url = origin.add("/songhan/SqueezeNet-Deep-Compression/raw/fb13faa/compressed_SqueezeNet.net", data)
        # The bundled manifest's digest and size (git blob b28ec20a..., 675,763 bytes) stay: only the URL moves.
        manifest = write_manifest(tmp / "manifest.json", {"squeezenet_sparse": {"url": url}})
        patch.setenv("DSD_ZOO_MANIFEST", str(manifest))
        status = run(
            tmp,
            "squeezenet_sparse",
            "--write-manifest",
            str(tmp / "released.json"),
            "--mirror",
            origin.url("/mirror/{name}/{file}"),
        )
    out = tmp / "out"
    return {
        "status": status,
        "out": out,
        "folder": out / "squeezenet_sparse",
        "data": data,
        "url": url,
        "entries": json.loads((out / release.ENTRIES_FILE).read_text()),
        "released_manifest": tmp / "released.json",
    }


@pytest.mark.fixtures
def test_sparse_release_entry_describes_the_written_file(sparse_release):
    assert sparse_release["status"] == 0
    weights = sparse_release["entries"]["squeezenet_sparse"]["weights"]
    path = sparse_release["folder"] / "squeezenet_sparse.safetensors"
    assert weights["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert weights["size"] == path.stat().st_size
    assert weights["file"] == "squeezenet_sparse.safetensors" and weights["hf"] is None
    assert weights["urls"] == [
        sparse_release["url"].split("/songhan")[0] + "/mirror/squeezenet_sparse/squeezenet_sparse.safetensors"
    ]
    assert sorted(p.name for p in sparse_release["folder"].iterdir()) == ["README.md", "squeezenet_sparse.safetensors"]
    assert leftovers(sparse_release["out"]) == []


@pytest.mark.fixtures
def test_sparse_release_records_what_was_converted(sparse_release):
    _, metadata = load_tensors(sparse_release["folder"] / "squeezenet_sparse.safetensors")
    # The sha256 of the bytes the server sent, computed here independently of the tool.
    assert metadata["source_sha256"] == hashlib.sha256(sparse_release["data"]).hexdigest()
    assert metadata["source_file"] == "compressed_SqueezeNet.net"  # the publisher's name, not the cache's
    assert metadata["model"] == "squeezenet_sparse"


@pytest.mark.fixtures
def test_sparse_release_fingerprint_checks_and_can_fail(sparse_release):
    fingerprint = sparse_release["entries"]["squeezenet_sparse"]["fingerprint"]
    model = build_with_weights(
        ARCHITECTURES["squeezenet1_0"], sparse_release["folder"] / "squeezenet_sparse.safetensors"
    )
    check_fingerprint(model, fingerprint)
    with torch.no_grad():  # the classic conversion bug: conv1 left in Caffe's BGR order
        model.features[0].weight.copy_(model.features[0].weight.flip(1))
    with pytest.raises(IntegrityError, match="fingerprint mismatch"):
        check_fingerprint(model, fingerprint)


@pytest.mark.fixtures
def test_sparse_release_model_card(sparse_release):
    card = (sparse_release["folder"] / "README.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    # songhan/SqueezeNet-Deep-Compression's LICENCE is the 2-clause BSD text.
    assert meta["license"] == "bsd-2-clause"
    assert {"image-classification", "dsd", "pytorch", "safetensors", "sparse"} <= set(meta["tags"])
    (result,) = meta["model-index"][0]["results"]
    # SqueezeNet paper, Table 2 (manifest metrics.paper): 42.5 / 19.7 % error = 57.5 / 80.3 % accuracy.
    assert [(m["type"], m["value"]) for m in result["metrics"]] == [("accuracy", 57.5), ("accuracy", 80.3)]
    assert result["dataset"]["name"] == "ILSVRC-2012 validation"
    assert result["source"]["url"] == "https://arxiv.org/abs/1602.07360"
    for fact in (
        sparse_release["url"],
        "b28ec20a342c1f0dd7f0c148be60df1192ff8036",
        hashlib.sha256(sparse_release["data"]).hexdigest(),
        sparse_release["entries"]["squeezenet_sparse"]["weights"]["sha256"],
        "@inproceedings{han2016deep",
        "## Preprocessing",
        "mean BGR (104.0, 117.0, 123.0)",
        "dsd_zoo.get_model('squeezenet_sparse')",
    ):
        assert fact in card, fact
    # About a third of the weights survive pruning (fixtures README: "about 33% density").
    assert re.search(r"\((3[0-6])\.\d%\)", card)


@pytest.mark.fixtures
def test_sparse_release_card_parses_with_huggingface_hub(sparse_release):
    from huggingface_hub import ModelCard

    card = ModelCard((sparse_release["folder"] / "README.md").read_text(encoding="utf-8"))
    assert [(r.metric_type, r.metric_value, r.dataset_type) for r in card.data.eval_results] == [
        ("accuracy", 57.5, "ILSVRC/imagenet-1k"),
        ("accuracy", 80.3, "ILSVRC/imagenet-1k"),
    ]


@pytest.mark.fixtures
def test_written_manifest_loads_the_release_from_a_mirror(sparse_release, origin, env, tmp_path):
    path = sparse_release["released_manifest"]
    manifest = parse_manifest(json.loads(path.read_text()), origin=str(path))
    entry = manifest.models["squeezenet_sparse"]
    assert entry.weights.sha256 == sparse_release["entries"]["squeezenet_sparse"]["weights"]["sha256"]
    assert entry.fingerprint is not None
    released = (sparse_release["folder"] / "squeezenet_sparse.safetensors").read_bytes()
    origin.add("/mirror/squeezenet_sparse/squeezenet_sparse.safetensors", released)
    env.setenv("DSD_ZOO_MANIFEST", str(path))
    before = len(origin.requests_for(urlsplit(sparse_release["url"]).path))

    model = dsd_zoo.get_model("squeezenet_sparse", progress=False)

    assert origin.full_transfers("/mirror/squeezenet_sparse/squeezenet_sparse.safetensors") == 1
    assert len(origin.requests_for(urlsplit(sparse_release["url"]).path)) == before  # no local conversion
    check_fingerprint(model, entry.fingerprint)
    tensors, _ = load_tensors(sparse_release["folder"] / "squeezenet_sparse.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, tensors[key]), key


# -- a Caffe original, exactly round-tripped ----------------------------------------------------------------------


def test_caffe_release_round_trip(caffe_manifest, caffe_original, tmp_path, capsys):
    _, reference = caffe_original
    assert run(tmp_path, "squeezenet_caffe") == 0
    out = tmp_path / "out"
    entry = json.loads((out / release.ENTRIES_FILE).read_text())["squeezenet_caffe"]
    loaded = build_with_weights(
        ARCHITECTURES["squeezenet1_0"], out / "squeezenet_caffe" / "squeezenet_caffe.safetensors"
    )
    assert_same_model(loaded, reference, 64, input_scale("squeezenet1_0"))
    # The fingerprint taken from the released file is reproduced by the model the caffemodel was written from.
    check_fingerprint(reference, entry["fingerprint"])
    printed = capsys.readouterr()
    assert "[1/1] squeezenet_caffe: fetching" in printed.err and "squeezenet_caffe  ok" in printed.out

    # A second release does not overwrite the first without --force, and leaves it intact.
    before = (out / "squeezenet_caffe" / "squeezenet_caffe.safetensors").read_bytes()
    assert run(tmp_path, "squeezenet_caffe") == 1
    assert "FileExistsError" in capsys.readouterr().out
    assert (out / "squeezenet_caffe" / "squeezenet_caffe.safetensors").read_bytes() == before
    assert run(tmp_path, "squeezenet_caffe", "--force") == 0
    assert leftovers(out) == []


def test_release_from_a_share_link_is_reproduced_by_a_local_conversion(env, tmp_path, origin, caffe_original):
    # OneDrive share links (the DSD release) end in a token, not a file name. The safetensors metadata
    # records the source file name, so the release tool and get_model's local conversion must name the
    # original alike, or the released sha256 can never be reproduced from the original.
    data, reference = caffe_original
    url = origin.add(f"/u/s!AkOf0kjGMRd2{tmp_path.name}", data)
    env.setenv(
        "DSD_ZOO_MANIFEST",
        str(
            write_manifest(
                tmp_path / "manifest.json",
                {"squeezenet_caffe": {"url": url, "digest": {"git_blob_sha1": git_blob_sha1(data)}, "size": len(data)}},
            )
        ),
    )
    assert run(tmp_path, "squeezenet_caffe", "--write-manifest", str(tmp_path / "released.json")) == 0
    released = tmp_path / "out" / "squeezenet_caffe" / "squeezenet_caffe.safetensors"
    # The released entry has no hf and no urls: get_model converts the (cached) original and checks its sha256.
    env.setenv("DSD_ZOO_MANIFEST", str(tmp_path / "released.json"))
    model = dsd_zoo.get_model("squeezenet_caffe", progress=False)
    assert_same_model(model, reference, 64, input_scale("squeezenet1_0"))
    assert load_tensors(released)[1]["source_file"] == url.rsplit("/", 1)[-1]


def test_tampered_original_is_refused_and_nothing_is_written(env, tmp_path, origin, caffe_original, capsys):
    data, _ = caffe_original
    url = origin.add(f"/tampered/{tmp_path.name}.caffemodel", data, faults=[Fault(flip_bit_at=1000, repeat=True)])
    env.setenv(
        "DSD_ZOO_MANIFEST",
        str(
            write_manifest(
                tmp_path / "manifest.json",
                {"squeezenet_caffe": {"url": url, "digest": {"git_blob_sha1": git_blob_sha1(data)}, "size": len(data)}},
            )
        ),
    )
    assert run(tmp_path, "squeezenet_caffe", "--write-manifest", str(tmp_path / "m.json")) == 1
    assert "DownloadError" in capsys.readouterr().out
    out = tmp_path / "out"
    assert not (out / "squeezenet_caffe").exists() and not (out / release.ENTRIES_FILE).exists()
    assert leftovers(out) == [] and not (tmp_path / "m.json").exists()


def test_original_without_digest_needs_trust_unverified(env, tmp_path, origin, caffe_original, capsys):
    data, _ = caffe_original
    url = origin.add(f"/onedrive-like/{tmp_path.name}.caffemodel", data)
    env.setenv(
        "DSD_ZOO_MANIFEST",
        str(
            write_manifest(tmp_path / "manifest.json", {"squeezenet_caffe": {"url": url, "digest": None, "size": None}})
        ),
    )
    env.setenv("DSD_ZOO_TRUST_UNVERIFIED", "1")  # the environment does not count for a release
    assert run(tmp_path, "squeezenet_caffe") == 1
    assert "UnverifiedSourceError" in capsys.readouterr().out
    assert not (tmp_path / "out" / "squeezenet_caffe").exists()

    written = tmp_path / "released.json"
    with pytest.warns(UserWarning, match="trusting the copy"):
        assert run(tmp_path, "squeezenet_caffe", "--trust-unverified", "--write-manifest", str(written)) == 0
    card = (tmp_path / "out" / "squeezenet_caffe" / "README.md").read_text()
    assert "none published; the releaser accepted the downloaded bytes without a check" in card

    # The manifest the release wrote pins the original it accepted, so every later user checks it.
    original = json.loads(written.read_text())["models"]["squeezenet_caffe"]["original"]
    assert original["digest"] == {"sha256": hashlib.sha256(data).hexdigest()} and original["pinned"] is True
    assert original["size"] == len(data)
    env.delenv("DSD_ZOO_TRUST_UNVERIFIED")
    env.setenv("DSD_ZOO_MANIFEST", str(written))
    env.setenv("DSD_ZOO_CACHE", str(tmp_path / "fresh-cache"))
    dsd_zoo.get_model("squeezenet_caffe", progress=False)  # no trust flag: the original has a digest now
    assert origin.full_transfers(urlsplit(url).path) == 2  # the release's download and this one


def test_write_manifest_refuses_a_manifest_without_the_model(caffe_manifest, tmp_path, capsys):
    target = tmp_path / "other.json"
    document = json.loads(bundled_manifest_path().read_text())
    del document["models"]["squeezenet_caffe"]
    target.write_text(json.dumps(document))
    before = target.read_bytes()
    assert run(tmp_path, "squeezenet_caffe", "--write-manifest", str(target)) == 1
    assert "has no model 'squeezenet_caffe'" in capsys.readouterr().err
    assert target.read_bytes() == before


def test_command_line_errors(env, capsys):
    with pytest.raises(SystemExit) as exit_info:
        release.main(["squeezenet_sparse", "--upload"])
    assert exit_info.value.code == 2
    assert release.main(["squeezenet_sparsee"]) == 2
    assert "did you mean squeezenet_sparse" in capsys.readouterr().err
    assert release.main(["--upload", "--repo-id", "not a repo id"]) == 2


# -- model cards for every manifest model (no conversion) ----------------------------------------------------------


HF_LICENSE_IDS = {"bsd-2-clause", "bsd-3-clause", "cc-by-4.0", "unknown", "other"}  # from the Hub's licence list


@pytest.mark.parametrize(
    "name", [n for n, e in load_manifest(str(bundled_manifest_path())).models.items() if e.original is not None]
)  # the embedded zoo has no original to release
def test_every_manifest_model_gets_a_valid_card(name):
    manifest = load_manifest(str(bundled_manifest_path()))
    entry = manifest.models[name]
    facts = ReleaseFacts(
        weights_file=entry.weights.file,
        sha256="0" * 64,
        size=1,
        metadata={},
        fingerprint={"input": "x", "indices": [], "values": [], "argmax": 0, "atol": 0.1},
        hf_repo_id="org/repo",
        hf_filename=entry.weights.file,
    )
    meta = front_matter(render_model_card(entry, manifest, facts))
    assert meta["license"] in HF_LICENSE_IDS
    if meta["license"] == "other":
        assert meta["license_name"] and meta["license_link"].startswith("https://")
    (result,) = meta["model-index"][0]["results"]
    # The manifest's published errors, as accuracies.
    assert [m["value"] for m in result["metrics"]] == [
        pytest.approx(100 - entry.paper_top1_err),
        pytest.approx(100 - entry.paper_top5_err),
    ]
    assert result["source"]["url"].startswith(("https://github.com/songhan/DSD", "https://arxiv.org/abs/"))


def test_license_mapping():
    models = load_manifest(str(bundled_manifest_path())).models
    assert hf_license(models["alexnet_caffe"]) == {
        "license": "other",
        "license_name": "bvlc-unrestricted-use",
        "license_link": "https://github.com/BVLC/caffe/blob/master/models/bvlc_alexnet/readme.md",
    }
    assert hf_license(models["alexnet_dsd"]) == {"license": "unknown"}  # the DSD release has no licence file
    assert hf_license(models["vgg16_caffe"]) == {"license": "cc-by-4.0"}
    assert hf_license(models["resnet50_fb"]) == {"license": "bsd-3-clause"}


# -- upload to a loopback Hub ------------------------------------------------------------------------------------


class HubServer(LoopbackService):
    """The Hub endpoints ``HfApi.create_repo`` and ``HfApi.upload_folder`` (huggingface_hub 2.4) call.

    * ``POST /api/repos/create`` (409 when the repository exists);
    * ``POST /api/validate-yaml`` (parses the card's front matter with PyYAML);
    * ``POST /api/models/{repo}/preupload/{revision}``: ``lfs`` for ``*.safetensors``, ``regular``
      for the rest (all ``regular`` with ``regular_only``, so that an hf_xet client never needs Xet);
    * ``POST /{repo}.git/info/lfs/objects/batch``: the git-lfs batch API, ``basic`` transfer;
    * ``PUT /lfs-storage/{oid}`` (the storage the batch answer points to; checks the sha256) and
      ``POST /lfs-verify``;
    * ``POST /api/models/{repo}/commit/{revision}``: the NDJSON commit; applies ``file`` and
      ``lfsFile`` operations and answers a new 40-hex commit id.

    Every API call must carry ``Authorization: Bearer <token>``. Committed files are served by
    :attr:`files`, a :class:`LoopbackServer` with the Hub's resolve endpoint, at their commit.
    ``fail[endpoint] = status`` answers that status to the next call of ``endpoint``.
    """

    def __init__(self, token: str, regular_only: bool = False) -> None:
        self.token = token
        self.regular_only = regular_only
        self.repos: Dict[str, Dict[str, bytes]] = {}
        self.commits: List[Tuple[str, str, List[str]]] = []  # (repo_id, commit, operation kinds)
        self.lfs: Dict[str, bytes] = {}
        self.calls: List[str] = []
        self.fail: Dict[str, int] = {}
        self.lock = threading.Lock()
        super().__init__(_HubHandler)
        self.httpd.hub = self  # type: ignore[attr-defined]

    def commit(self, repo_id: str, lines: List[Dict[str, Any]]) -> Tuple[int, Dict[str, Any]]:
        files = dict(self.repos[repo_id])
        kinds = []
        for line in lines:
            kinds.append(line["key"])
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                body = self.lfs.get(value["oid"])
                if body is None or len(body) != value["size"]:
                    return 400, {"error": f"LFS object {value['oid']} was not uploaded"}
                files[value["path"]] = body
            elif line["key"] != "header":
                return 400, {"error": f"unsupported operation {line['key']}"}
        parent = self.commits[-1][1] if self.commits else ""
        oid = hashlib.sha1((parent + repo_id + json.dumps(lines, sort_keys=True)).encode()).hexdigest()
        self.repos[repo_id] = files
        self.commits.append((repo_id, oid, kinds))
        for path, body in files.items():
            self.files.add_hf_file(repo_id, path, body, commit=oid)
        return 200, {"commitUrl": f"{self.base_url}/{repo_id}/commit/{oid}", "commitOid": oid}


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if not size:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, document: Any = None) -> None:
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        path = unquote(urlsplit(self.path).path)
        body = self._body()
        endpoint, status, answer = self._route(hub, path, body)
        with hub.lock:
            hub.calls.append(endpoint)
            if endpoint in hub.fail:
                status, answer = hub.fail.pop(endpoint), {"error": "injected failure"}
        self._reply(status, answer)

    def _route(self, hub: HubServer, path: str, body: bytes) -> Tuple[str, int, Any]:
        storage = re.fullmatch(r"/lfs-storage/([0-9a-f]{64})", path)
        if self.command == "PUT" and storage:  # presigned storage: no token, like S3
            if hashlib.sha256(body).hexdigest() != storage.group(1):
                return "lfs-put", 400, {"error": "content does not match its oid"}
            with hub.lock:
                hub.lfs[storage.group(1)] = body
            return "lfs-put", 200, None
        if self.headers.get("Authorization") != f"Bearer {hub.token}":
            return "unauthorized", 401, {"error": "Invalid credentials in Authorization header"}
        request = json.loads(body) if body and not path.endswith(("/commit/main",)) else {}
        if path == "/api/repos/create":
            repo_id = "/".join(p for p in (request.get("organization"), request["name"]) if p)
            with hub.lock:
                if repo_id in hub.repos:
                    return "create", 409, {"error": "You already created this model repo", "url": repo_id}
                hub.repos[repo_id] = {}
            return "create", 200, {"url": f"{hub.base_url}/{repo_id}"}
        if path == "/api/validate-yaml":
            try:
                front_matter(request["content"])
            except Exception as exc:  # noqa: BLE001 - any YAML problem is the client's error
                return "validate-yaml", 400, {"errors": [{"message": str(exc)}]}
            return "validate-yaml", 200, {"errors": [], "warnings": []}
        if re.fullmatch(r"/api/models/[^/]+/[^/]+/preupload/main", path):
            return (
                "preupload",
                200,
                {
                    "files": [
                        {
                            "path": f["path"],
                            "shouldIgnore": False,
                            "oid": None,
                            "uploadMode": "lfs"
                            if f["path"].endswith(".safetensors") and not hub.regular_only
                            else "regular",
                        }
                        for f in request["files"]
                    ]
                },
            )
        if path.endswith(".git/info/lfs/objects/batch"):
            return (
                "lfs-batch",
                200,
                {
                    "transfer": "basic",
                    "objects": [
                        {
                            "oid": o["oid"],
                            "size": o["size"],
                            "actions": {
                                "upload": {"href": f"{hub.base_url}/lfs-storage/{o['oid']}"},
                                "verify": {"href": f"{hub.base_url}/lfs-verify"},
                            },
                        }
                        for o in request["objects"]
                    ],
                },
            )
        if path == "/lfs-verify":
            stored = hub.lfs.get(request["oid"])
            return "lfs-verify", 200 if stored is not None and len(stored) == request["size"] else 404, {}
        commit = re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/main", path)
        if commit:
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            with hub.lock:
                status, answer = hub.commit(commit.group(1), lines)
            return "commit", status, answer
        return "unknown", 404, {"error": f"no endpoint {self.command} {path}"}


@pytest.fixture
def hub_env(caffe_manifest, env):
    """The real huggingface_hub client pointed at a HubServer with a dummy token."""
    env.setenv("HF_TOKEN", TOKEN)

    def start(regular_only: bool = False, xet: bool = False) -> HubServer:
        from huggingface_hub import constants

        # hf_xet is installed: with Xet on, huggingface_hub uploads LFS files only through a Xet
        # storage service, which this server does not implement (see docs/release.md). The constant
        # is what HF_HUB_DISABLE_XET=1 sets when huggingface_hub is imported.
        env.setattr(constants, "HF_HUB_DISABLE_XET", not xet)
        env.setenv("HF_HUB_DISABLE_XET", "0" if xet else "1")
        hub = HubServer(TOKEN, regular_only=regular_only).__enter__()
        servers.append(hub)
        env.setenv("HF_ENDPOINT", hub.base_url)
        return hub

    servers: List[HubServer] = []
    yield start
    for hub in servers:
        hub.__exit__()


def _released_weights(tmp_path: Path, name: str = "squeezenet_caffe") -> Dict[str, Any]:
    return json.loads((tmp_path / "out" / release.ENTRIES_FILE).read_text())[name]["weights"]


def test_upload_over_git_lfs_pins_the_commit_and_get_model_downloads_it(hub_env, env, tmp_path, caffe_original):
    hub = hub_env()
    written = tmp_path / "released.json"
    assert (
        run(tmp_path, "squeezenet_caffe", "--upload", "--repo-id", "dsd-zoo/{name}", "--write-manifest", str(written))
        == 0
    )

    folder = tmp_path / "out" / "squeezenet_caffe"
    files = hub.repos["dsd-zoo/squeezenet_caffe"]
    assert files == {
        "squeezenet_caffe.safetensors": (folder / "squeezenet_caffe.safetensors").read_bytes(),
        "README.md": (folder / "README.md").read_bytes(),
    }
    assert hub.calls == [
        "create",
        "validate-yaml",
        "validate-yaml",
        "preupload",
        "lfs-batch",
        "lfs-put",
        "lfs-verify",
        "commit",
    ]
    ((repo_id, commit, kinds),) = hub.commits
    assert sorted(kinds) == ["file", "header", "lfsFile"]  # the card inline, the weights through LFS
    weights = _released_weights(tmp_path)
    assert weights["hf"] == {
        "repo_id": "dsd-zoo/squeezenet_caffe",
        "revision": commit,
        "filename": "squeezenet_caffe.safetensors",
    }

    # The manifest written by the release downloads the file back from the Hub at the pinned commit.
    env.setenv("DSD_ZOO_MANIFEST", str(written))
    env.setenv("HF_ENDPOINT", hub.files.base_url)
    env.setenv("DSD_ZOO_CACHE", str(tmp_path / "fresh-cache"))
    model = dsd_zoo.get_model("squeezenet_caffe", progress=False)
    assert hub.files.full_transfers(f"/dsd-zoo/squeezenet_caffe/resolve/{commit}/squeezenet_caffe.safetensors") == 1
    assert_same_model(model, caffe_original[1], 64, input_scale("squeezenet1_0"))


def test_upload_with_the_xet_client_into_a_shared_repository(hub_env, tmp_path):
    hub = hub_env(regular_only=True, xet=True)
    assert run(tmp_path, "squeezenet_caffe", "--upload", "--repo-id", "dsd-zoo/zoo") == 0
    # huggingface_hub's hf_xet upload pipeline: one YAML check, no LFS batch, files inline in the commit.
    assert hub.calls == ["create", "validate-yaml", "preupload", "commit"]
    assert sorted(hub.repos["dsd-zoo/zoo"]) == [
        "squeezenet_caffe/README.md",
        "squeezenet_caffe/squeezenet_caffe.safetensors",
    ]
    assert _released_weights(tmp_path)["hf"] == {
        "repo_id": "dsd-zoo/zoo",
        "revision": hub.commits[-1][1],
        "filename": "squeezenet_caffe/squeezenet_caffe.safetensors",
    }


@pytest.mark.parametrize("endpoint, status", [("commit", 500), ("create", 403), ("lfs-batch", 401)])
def test_failed_upload_leaves_nothing(hub_env, tmp_path, capsys, endpoint, status):
    hub = hub_env()
    hub.fail[endpoint] = status
    assert run(tmp_path, "squeezenet_caffe", "--upload", "--repo-id", "dsd-zoo/{name}") == 1
    assert "UploadError" in capsys.readouterr().out
    out = tmp_path / "out"
    assert not (out / "squeezenet_caffe").exists() and not (out / release.ENTRIES_FILE).exists()
    assert leftovers(out) == []


def test_googlenet_dsd_card_lists_the_logged_heads():
    # The manifest's metrics.heads (GoogleNet/accuracy.log of the DSD release) reach the card.
    manifest = load_manifest(str(bundled_manifest_path()))
    facts = ReleaseFacts("googlenet_dsd.safetensors", "0" * 64, 1, {}, {})
    card = render_model_card(manifest.models["googlenet_dsd"], manifest, facts)
    assert "| `loss1` head | top-1 42.61%, top-5 18.64% |" in card
    assert "| `loss2` head | top-1 35.78%, top-5 13.69% |" in card
    assert "`loss1` head" not in render_model_card(manifest.models["googlenet_caffe"], manifest, facts)
