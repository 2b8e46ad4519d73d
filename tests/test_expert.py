"""The expert-model path really segments: a MONAI UNet trained for seconds on synthetic shapes, saved
as TorchScript, as a state dict and as a MONAI bundle, then run through the rois stage on fresh images."""

from __future__ import annotations

import json
import pickle
import textwrap

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from medtrinity_core.config import load_sources
from medtrinity_core.errors import MedtrinityError
from medtrinity_core.roi import rle
from medtrinity_core.roi.expert import ExpertModel, load_network
from medtrinity_core.roi.extract import dataset_rois, extract_rois
from medtrinity_core.sources.schema import ExpertSpec, SourceConfig
from medtrinity_core.storage import Workdir

SIZE = 64
NET_ARGS = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}


def synthetic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs and squares of random size and place on a noisy background."""
    images = rng.normal(0.3, 0.08, (n, SIZE, SIZE)).astype(np.float32)
    masks = np.zeros((n, SIZE, SIZE), bool)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        r = rng.integers(6, 14)
        cy, cx = rng.integers(r, SIZE - r, 2)
        masks[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) if i % 2 else ((abs(yy - cy) <= r) & (abs(xx - cx) <= r))
        images[i][masks[i]] += 0.45
    return np.clip(images, 0, 1), masks


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = UNet(**NET_ARGS)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(120):
        x, y = synthetic(rng, 16)
        opt.zero_grad()
        loss = loss_fn(net(torch.from_numpy(x)[:, None]), torch.from_numpy(y)[:, None].long())
        loss.backward()
        opt.step()
    net.eval()
    folder = tmp_path_factory.mktemp("models")
    torch.save(net.state_dict(), folder / "unet.pt")
    torch.jit.script(net).save(str(folder / "unet.ts"))
    bundle = folder / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps({"network_def": {"_target_": "monai.networks.nets.UNet", **NET_ARGS}}))
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"version": "0.1.0", "name": "synthetic-shapes"}))
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return folder


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("kind", ["torchscript", "state_dict", "bundle"])
def test_expert_path_segments_fresh_images(trained, tmp_path, kind):
    path = {"torchscript": trained / "unet.ts", "state_dict": trained / "unet.pt", "bundle": trained / "bundle"}[kind]
    spec = ExpertSpec(kind=kind, path=path, labels=((1, "lesion"),), network="UNet", network_args=json.dumps(NET_ARGS), roi_size=(32, 32), batch_size=4,
                      trust_code=kind != "state_dict")
    src = SourceConfig(name="syn", modality="ct", license="CC0-1.0", root=tmp_path, layout="labeled_images", images=".*", expert=spec, min_roi_pixels=10)
    wd = Workdir.at(tmp_path / "wd")
    images, truth = synthetic(np.random.default_rng(123), 10)
    rows = []
    for i, img in enumerate(images):
        uri, _sha = wd.put_png((img * 255).astype(np.uint8))
        rows.append({"image_id": f"img-{i}", "item_id": f"item-{i}", "relpath": f"{i}.png", "image_uri": uri, "width": SIZE, "height": SIZE,
                     "masks": [], "boxes": [], "label_volumes": [], "labels": [], "image_left": None, "image_top": None, "spacing_x": None, "spacing_y": None})
    model = ExpertModel(spec)
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    rois, q = extract_rois(src, rows, wd, model)
    assert q.height == 0 and set(rois["method"].to_list()) == {"expert_model"}
    assert rois["model_id"].unique().to_list() == [model.model_id] and model.model_id.startswith(f"{kind}:")
    scores = []
    for i in range(len(images)):
        predicted = np.zeros((SIZE, SIZE), bool)
        for counts in rois.filter(rois["image_id"] == f"img-{i}")["rle_counts"].to_list():
            predicted |= rle.decode(counts, SIZE, SIZE)
        scores.append(dice(predicted, truth[i]))
    assert np.mean(scores) >= 0.8, scores
    assert rois["confidence"].min() > 0.5 and not rois["low_confidence"].any()
    if kind == "state_dict":  # the floor: ROIs under the expert's min_confidence are flagged and kept out of the dataset
        floor = float(rois["confidence"].median())
        strict = src.model_copy(update={"expert": spec.model_copy(update={"min_confidence": floor})})
        flagged, _ = extract_rois(strict, rows, wd, model)
        assert flagged["low_confidence"].to_list() == [c < floor for c in flagged["confidence"].to_list()] and flagged["low_confidence"].any()
        assert dataset_rois(flagged, strict).height == flagged.height - int(flagged["low_confidence"].sum())
        assert dataset_rois(flagged, strict.model_copy(update={"include_low_confidence": True})).height == flagged.height


def test_weights_are_loaded_without_running_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this would run on load",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"weight": Evil()}, fh)
    spec = ExpertSpec(kind="state_dict", path=path, labels=((1, "x"),), network="UNet", network_args=json.dumps(NET_ARGS))
    with pytest.raises(pickle.UnpicklingError):
        load_network(spec)
    bad = ExpertSpec(kind="state_dict", path=path, labels=((1, "x"),), network="NoSuchNet")
    with pytest.raises(MedtrinityError, match="NoSuchNet is not one of the allow-listed"):
        load_network(bad)


@pytest.mark.parametrize("kind", ["torchscript", "bundle"])
def test_model_files_that_run_code_need_trust_code(trained, kind):
    path = trained / ("unet.ts" if kind == "torchscript" else "bundle")
    with pytest.raises(MedtrinityError, match="trust_code: true"):
        load_network(ExpertSpec(kind=kind, path=path, labels=((1, "x"),)))


def expert_yaml(tmp_path, expert: str):
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "sources.yaml"
    path.write_text("version: 1\nsources:\n  - name: syn\n    modality: ct\n    license: CC0-1.0\n    root: data\n    layout: labeled_images\n"
                    "    images: '(?P<label>a)\\.png'\n    expert:\n" + textwrap.indent(textwrap.dedent(expert), "      "))
    return path


@pytest.mark.parametrize(("expert", "message"), [
    ("kind: torchscript\npath: {ts}\nlabels: {{1: lesion}}\n", "sources.yaml:10: sources[0].expert.kind: torchscript runs code from the model files on load"),
    ("kind: bundle\npath: {bundle}\nlabels: {{1: lesion}}\n", "sources.yaml:10: sources[0].expert.kind: bundle runs code from the model files on load"),
    ("kind: state_dict\npath: {pt}\nnetwork: {{name: DenseNet121}}\nlabels: {{1: lesion}}\n", "sources[0].expert.network.name: 'DenseNet121' is not one of UNet"),
    ("kind: state_dict\npath: {pt}\nnetwork: {{name: UNet, args: {{_target_: os.system}}}}\nlabels: {{1: lesion}}\n", "sources[0].expert.network.args: must map argument names"),
])
def test_validation_refuses_model_files_that_run_code(tmp_path, trained, expert, message):
    from medtrinity_core.errors import SourcesFileError

    path = expert_yaml(tmp_path, expert.format(ts=trained / "unet.ts", bundle=trained / "bundle", pt=trained / "unet.pt"))
    with pytest.raises(SourcesFileError) as err:
        load_sources(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    trusted = expert_yaml(tmp_path, expert.replace("kind:", "trust_code: true\nkind:").format(ts=trained / "unet.ts", bundle=trained / "bundle", pt=trained / "unet.pt"))
    if "state_dict" not in expert:
        assert load_sources(trusted).sources[0].expert.trust_code


def test_sources_file_declares_an_expert(tmp_path, trained):
    (tmp_path / "data").mkdir()
    path = tmp_path / "sources.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        sources:
          - name: syn
            modality: ct
            license: CC0-1.0
            root: data
            layout: labeled_images
            images: '(?P<label>a)\\.png'
            expert:
              kind: state_dict
              path: {trained / 'unet.pt'}
              network: {{name: UNet, args: {json.dumps(NET_ARGS)}}}
              labels: {{1: lesion}}
              roi_size: [32, 32]
        """))
    spec = load_sources(path).sources[0].expert
    assert spec.kind == "state_dict" and spec.labels == ((1, "lesion"),) and spec.roi_size == (32, 32)
    assert json.loads(spec.network_args)["channels"] == [8, 16, 32]


class Picky(torch.nn.Module):
    """Foreground where the image is bright; refuses saturated input, as real models fail on odd images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.max() > 0.99):
            raise ValueError("saturated input")
        return torch.cat([0.5 - x, x - 0.5], dim=1) * 20


def expert_rows(wd, images):
    rows = []
    for i, img in enumerate(images):
        uri, _ = wd.put_png(img)
        rows.append({"image_id": f"img-{i}", "item_id": f"item-{i}", "relpath": f"{i}.png", "image_uri": uri, "width": img.shape[1], "height": img.shape[0],
                     "masks": [], "boxes": [], "label_volumes": [], "labels": [], "image_left": None, "image_top": None, "spacing_x": None, "spacing_y": None})
    return rows


def test_an_image_the_expert_fails_on_is_quarantined_alone(tmp_path):
    from medtrinity_core.roi.expert import load_expert

    torch.jit.script(Picky()).save(str(tmp_path / "picky.ts"))
    spec = ExpertSpec(kind="torchscript", path=tmp_path / "picky.ts", labels=((1, "bright"),), roi_size=(32, 32), batch_size=8, trust_code=True)
    src = SourceConfig(name="syn", modality="ct", license="CC0-1.0", root=tmp_path, layout="labeled_images", images=".*", expert=spec)
    images = [np.full((48, 48), 40, np.uint8) for _ in range(3)]
    images[0][10:30, 10:30] = 200
    images[2][5:20, 25:45] = 220
    images[1][:] = 255  # saturated: the model raises on this one only
    wd = Workdir.at(tmp_path / "wd")
    model, error = load_expert(spec)
    assert error is None
    rois, q = extract_rois(src, expert_rows(wd, images), wd, model)
    assert sorted(rois["image_id"].unique().to_list()) == ["img-0", "img-2"] and set(rois["method"]) == {"expert_model"}
    assert q["item_id"].to_list() == ["item-1"] and q["reason"].to_list() == ["roi_error"] and "saturated input" in q["detail"][0]


def test_an_expert_that_cannot_be_loaded_quarantines_the_images_it_was_to_segment(tmp_path):
    from medtrinity_core.roi.expert import load_expert

    (tmp_path / "broken.ts").write_bytes(b"not a torchscript archive")
    spec = ExpertSpec(kind="torchscript", path=tmp_path / "broken.ts", labels=((1, "x"),), trust_code=True)
    src = SourceConfig(name="syn", modality="ct", license="CC0-1.0", root=tmp_path, layout="labeled_images", images=".*", expert=spec)
    model, error = load_expert(spec)
    assert model is None and "broken.ts could not be loaded" in error
    wd = Workdir.at(tmp_path / "wd")
    rois, q = extract_rois(src, expert_rows(wd, [np.zeros((16, 16), np.uint8)] * 2), wd, model, error)
    assert rois.height == 0 and q["reason"].to_list() == ["roi_error", "roi_error"] and q["item_id"].to_list() == ["item-0", "item-1"]
