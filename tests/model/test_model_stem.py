"""The network's ends (``stem``): space-to-depth entry, depth-to-space exit, what they can express,
what they cost, the memory format a CPU trains them in, and how the choice travels with a model
(model.json, loading, encoding)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from model_testdata import make_cohort, sloppy_config, toy_atlas, toy_template  # noqa: E402

from latentbids.errors import UsageError  # noqa: E402
from latentbids.model.bundle import load_bundle  # noqa: E402
from latentbids.model.network import AutoEncoder3D, DepthToSpace3d, SpaceToDepth3d  # noqa: E402
from latentbids.model.subject_encoding import encode_with_model  # noqa: E402
from latentbids.settings import group_settings
from latentbids.workflows.group.training import train_and_encode  # noqa: E402

torch.set_num_threads(1)


def test_space_to_depth_is_a_lossless_rearrangement():
    x = torch.rand(2, 3, 4, 6, 8)
    h = SpaceToDepth3d()(x)
    assert h.shape == (2, 24, 2, 3, 4)
    torch.testing.assert_close(DepthToSpace3d()(h), x, rtol=0, atol=0)
    # channel 8c + 4i + 2j + k holds offset (i, j, k) of channel c
    for c, (i, j, k) in itertools.product(range(3), itertools.product((0, 1), repeat=3)):
        torch.testing.assert_close(h[:, 8 * c + 4 * i + 2 * j + k], x[:, c, i::2, j::2, k::2], rtol=0, atol=0)


def _offsets():
    """Full-resolution offset k in -1..1 of a stride-2 kernel = (half-resolution offset d, phase p)."""
    return {-1: (-1, 1), 0: (0, 0), 1: (0, 1)}


def test_space_to_depth_entry_expresses_the_conv_entry_exactly():
    """The conv stem's first layer, Conv3d(1->c, k3, stride 2), is one particular stride-1 Conv3d(8->c,
    k3) after space-to-depth (the other taps zero): the new entry loses nothing the old one could do."""
    torch.manual_seed(0)
    old = nn.Conv3d(1, 5, 3, stride=2, padding=1)
    new = nn.Conv3d(8, 5, 3, stride=1, padding=1)
    weight = torch.zeros_like(new.weight)
    for kx, ky, kz in itertools.product((-1, 0, 1), repeat=3):
        (dx, px), (dy, py), (dz, pz) = (_offsets()[k] for k in (kx, ky, kz))
        weight[:, 4 * px + 2 * py + pz, dx + 1, dy + 1, dz + 1] = old.weight[:, 0, kx + 1, ky + 1, kz + 1]
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(old.bias)
    x = torch.rand(2, 1, 8, 12, 10)
    torch.testing.assert_close(new(SpaceToDepth3d()(x)), old(x), rtol=1e-5, atol=1e-6)


def test_patch_entry_is_a_stride_2_k2_convolution_of_the_map():
    """The patch stem's k1 entry after space-to-depth is exactly a Conv3d(1->c, k2, stride 2): every
    2x2x2 block of the map becomes one feature vector (a patch embedding)."""
    torch.manual_seed(0)
    net = AutoEncoder3D((16, 16, 16), latent_dim=3, channels=(5, 6), stem="patch")
    entry = net.encoder[0]
    assert entry.kernel_size == (1, 1, 1) and entry.in_channels == 8
    patch = nn.Conv3d(1, 5, 2, stride=2, bias=False)
    with torch.no_grad():  # channel 4i + 2j + k of the rearranged map is offset (i, j, k) of the block
        patch.weight.copy_(entry.weight.view(5, 2, 2, 2).unsqueeze(1))
    x = torch.rand(2, 1, 16, 16, 16)
    torch.testing.assert_close(entry(net.space_to_depth(x)), patch(x), rtol=1e-5, atol=1e-6)


def test_patch_is_the_default_and_trains_channels_last_on_a_cpu():
    from latentbids.config import RunConfig
    from latentbids.model.fast_path import resolve_fast_path
    from latentbids.model.train_settings import TrainSettings

    assert RunConfig().model.stem == TrainSettings().stem == AutoEncoder3D((16, 16, 16)).stem == "patch"
    cpu = {stem: resolve_fast_path("cpu", True, True, stem=stem).memory_format
           for stem in ("patch", "space_to_depth", "conv")}
    assert cpu == {"patch": "channels_last_3d", "space_to_depth": "channels_last_3d", "conv": "contiguous"}
    # fast=False is the plain fp32 baseline; an explicit choice is obeyed
    assert resolve_fast_path("cpu", False, True, stem="patch").memory_format == "contiguous"
    assert resolve_fast_path("cpu", True, True, memory_format="contiguous", stem="patch").memory_format == "contiguous"
    # the same network in either layout computes the same reconstruction
    torch.manual_seed(0)
    net = AutoEncoder3D((16, 32, 16), latent_dim=4, channels=(4, 8, 8, 8), stem="patch").eval()
    x = torch.rand(3, 1, 16, 32, 16)
    with torch.no_grad():
        plain = net(x)[0]
        cl = net.to(memory_format=torch.channels_last_3d)(x.contiguous(memory_format=torch.channels_last_3d))[0]
    torch.testing.assert_close(cl, plain, rtol=1e-5, atol=1e-6)


def test_depth_to_space_exit_expresses_a_transposed_convolution_exactly():
    """ConvTranspose3d(c->1, k4, stride 2) = Conv3d(c->8, k3) then depth-to-space: the new exit
    predicts each 2x2x2 block from the half-resolution features around it, as that upsampling does."""
    torch.manual_seed(1)
    old = nn.ConvTranspose3d(4, 1, 4, stride=2, padding=1)
    new = nn.Conv3d(4, 8, 3, padding=1)
    weight = torch.zeros_like(new.weight)
    # output 2j + p reads input j + d through kernel tap t = p + 1 - 2d (t in 0..3)
    taps = {(p, d): p + 1 - 2 * d for p in (0, 1) for d in (-1, 0, 1) if 0 <= p + 1 - 2 * d <= 3}
    for (px, dx), (py, dy), (pz, dz) in itertools.product(taps, repeat=3):
        weight[4 * px + 2 * py + pz, :, dx + 1, dy + 1, dz + 1] = old.weight[
            :, 0, taps[(px, dx)], taps[(py, dy)], taps[(pz, dz)]]
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.fill_(float(old.bias))
    h = torch.rand(2, 4, 4, 6, 5)
    torch.testing.assert_close(DepthToSpace3d()(new(h)), old(h), rtol=1e-5, atol=1e-6)


def test_every_stem_keeps_shapes_parameter_names_and_rebuilds():
    conv = AutoEncoder3D((16, 32, 16), latent_dim=5, channels=(2, 4, 4, 8), stem="conv")
    s2d = AutoEncoder3D((16, 32, 16), latent_dim=5, channels=(2, 4, 4, 8), stem="space_to_depth")
    patch = AutoEncoder3D((16, 32, 16), latent_dim=5, channels=(2, 4, 4, 8), stem="patch")
    x = torch.rand(3, 1, 16, 32, 16)
    assert list(patch.state_dict()) == list(s2d.state_dict())  # the same layers, one kernel differs
    assert patch.encoder[0].weight.shape == (2, 8, 1, 1, 1) and patch.decoder[-1].weight.shape == (8, 2, 3, 3, 3)
    for net in (conv, s2d, patch):
        recon, z = net(x)
        assert recon.shape == x.shape and z.shape == (3, 5)
        assert 0 <= float(recon.detach().min()) and float(recon.detach().max()) <= 1
    # same names (encoder.0 is the first convolution either way), 8 channels where the stem differs
    assert list(conv.state_dict()) != list(s2d.state_dict())  # one decoder block fewer
    assert s2d.encoder[0].weight.shape == (2, 8, 3, 3, 3) and conv.encoder[0].weight.shape == (2, 1, 3, 3, 3)
    assert s2d.decoder[-1].weight.shape == (8, 2, 3, 3, 3) and s2d.encoder[0].stride == (1, 1, 1)
    arch = s2d.architecture()
    assert arch["stem"] == "space_to_depth"
    twin = AutoEncoder3D.from_architecture(json.loads(json.dumps(arch)))
    twin.load_state_dict(s2d.state_dict())
    s2d.eval(), twin.eval()
    torch.testing.assert_close(twin(x)[0], s2d(x)[0])
    # a model.json of latentbids 0.1 has no stem: it is the conv network
    old = {k: v for k, v in conv.architecture().items() if k != "stem"}
    assert AutoEncoder3D.from_architecture(old).stem == "conv"
    with pytest.raises(ValueError, match="unknown stem"):
        AutoEncoder3D((16, 16, 16), stem="pixel")


def test_space_to_depth_halves_the_work_at_full_resolution():
    """FLOP of one forward pass at the 2 mm box (counted on the meta device: nothing computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    with torch.device("meta"):
        for stem in ("conv", "space_to_depth", "patch"):
            net, x = AutoEncoder3D((96, 112, 96), stem=stem), torch.empty(1, 1, 96, 112, 96)
            with FlopCounterMode(display=False) as counter:
                net(x)
            flops[stem] = counter.get_total_flops() / 1e9
    assert flops["conv"] == pytest.approx(7.87, abs=0.01)  # the profile
    assert flops["space_to_depth"] == pytest.approx(4.42, abs=0.01)
    assert flops["patch"] < 0.85 * flops["space_to_depth"]


@pytest.mark.parametrize("stem, version", [("conv", 1), ("space_to_depth", 2), ("patch", 3)])
def test_stem_travels_with_the_model_folder(tmp_path, stem, version):
    """A folder is written with the lowest format version that describes its stem, so a reader that
    could not build the network refuses it in one line (conv folders stay readable by latentbids 0.1),
    and every stem's folder encodes a subject as its training run did."""
    tpl = toy_template()
    atlas = toy_atlas(tpl)
    rec = make_cohort(tmp_path / "gm", tpl, n_subjects=5, two_sessions=())
    config = sloppy_config(tmp_path, fit_all=True, max_epochs=1, stem=stem)
    res = train_and_encode(group_settings(config), rec, tpl, atlas)
    meta = json.loads((res.model_dir / "model.json").read_text())
    assert meta["architecture"]["stem"] == stem and meta["format_version"] == version
    assert meta["training"].get("stem", "conv") == stem  # conv: the training record of latentbids 0.1
    model = load_bundle(res.model_dir).load_model("all")
    assert model.stem == stem and isinstance(model.space_to_depth, SpaceToDepth3d) == (stem != "conv")
    out = encode_with_model(res.model_dir, rec.gm_path[2], participant_id=rec.participant_id[2], device="cpu")
    row = res.latent_table.iloc[2]
    np.testing.assert_allclose(out.latent[["z0", "z1", "z2", "z3"]].to_numpy()[0],
                               row[["z0", "z1", "z2", "z3"]].to_numpy(dtype=float), rtol=1e-5, atol=1e-6)
    # a folder a newer latentbids wrote is refused in one line, not misread
    meta["format_version"] = 4
    (res.model_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="upgrade latentbids"):
        load_bundle(res.model_dir)


def test_unknown_stem_is_a_usage_error(tmp_path):
    tpl = toy_template()
    rec = make_cohort(tmp_path / "gm", tpl, n_subjects=5, two_sessions=())
    with pytest.raises(UsageError, match="stem = 'pixel' is not valid: use one of conv, space_to_depth, patch"):
        train_and_encode(group_settings(sloppy_config(tmp_path, fit_all=True, stem="pixel")), rec, tpl, toy_atlas(tpl))
