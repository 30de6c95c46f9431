"""The SA-KD game on the real model: each step moves only its own player."""
import pytest
import torch
from torch_geometric.loader import DataLoader

from pyg_docre.config import GTNConfig, ModelConfig, ObjectivesConfig
from pyg_docre.data import PAIR_EDGE_TYPE, build_hdg
from pyg_docre.models.docre_model import DocREModel
from pyg_docre.training.objective import DocREObjective


@pytest.fixture(scope="module")
def setup(dev_docs, tokenizer, rel2id):
    torch.manual_seed(0)
    batch = next(iter(DataLoader([build_hdg(dev_docs[i], tokenizer, rel2id) for i in (1, 2)],
                                 batch_size=2)))
    return batch, rel2id


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(module, snapshot):
    return [k for k, v in module.state_dict().items() if not torch.equal(v, snapshot[k])]


@pytest.mark.parametrize("student_projection", [True, False])
def test_discriminator_and_model_steps_touch_only_their_side(setup, student_projection):
    batch, rel2id = setup
    objectives = ObjectivesConfig(distill_layers=[3, 6], student_projection=student_projection)
    model = DocREModel(ModelConfig(gtn=GTNConfig(dropout=0.0)), rel2id,
                       **objectives.model_outputs()).train()
    objective = DocREObjective(objectives, model.channels, model.distill_layers)
    assert sorted(objective.discriminators) == ["3", "6"]
    assert sorted(objective.student_heads) == (["3", "6"] if student_projection else [])
    generator_params = list(model.parameters()) + objective.generator_parameters()
    model_opt = torch.optim.SGD(generator_params, lr=1.0)
    disc_opt = torch.optim.SGD(objective.discriminators.parameters(), lr=1.0)

    out = model(batch)
    model_before = _snapshot(model)
    heads_before, disc_before = _snapshot(objective.student_heads), _snapshot(objective.discriminators)
    disc_opt.zero_grad()
    objective.discriminator_loss(out).backward()
    assert all(p.grad is None for p in generator_params)
    disc_opt.step()
    assert _changed(model, model_before) == []
    assert _changed(objective.student_heads, heads_before) == []
    assert _changed(objective.discriminators, disc_before)

    disc_before = _snapshot(objective.discriminators)
    disc_opt.zero_grad(set_to_none=True)
    loss, parts = objective.model_loss(out, batch[PAIR_EDGE_TYPE].y)
    assert set(parts) == {"L_R", "L_N", "L_A", "loss"}
    assert parts["loss"] == pytest.approx(parts["L_R"] + 0.1 * parts["L_N"] + 0.01 * parts["L_A"],
                                          rel=1e-5)
    model_opt.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in objective.discriminators.parameters())
    model_opt.step()
    assert _changed(objective.discriminators, disc_before) == []
    assert bool(_changed(objective.student_heads, heads_before)) == student_projection
    encoder_changed = [k for k in _changed(model, model_before) if k.startswith("encoder.")]
    assert encoder_changed


def test_student_projection_is_applied_before_the_discriminator(setup):
    """The discriminator sees P_l(F^(l)), not F^(l): a head mapping to a constant changes L_A."""
    batch, rel2id = setup
    objectives = ObjectivesConfig(distill_layers=[6], reconstruction=False)
    model = DocREModel(ModelConfig(gtn=GTNConfig(dropout=0.0)), rel2id,
                       **objectives.model_outputs()).train()
    objective = DocREObjective(objectives, model.channels, model.distill_layers)
    out = model(batch)
    features = out.layer_features[6]
    head = objective.student_heads["6"]
    assert torch.allclose(objective.student(6, features), head(features))
    # LayerNorm output: zero mean, unit variance per node (gain 1, bias 0 at initialisation).
    projected = objective.student(6, features)
    assert torch.allclose(projected.mean(-1), torch.zeros(len(projected)), atol=1e-5)
    with torch.no_grad():
        head.norm.weight.zero_()
        head.norm.bias.fill_(3.0)                  # every student node becomes the same vector
    discriminator = objective.discriminators["6"]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        discriminator(torch.full((1, model.channels), 3.0)), torch.ones(1)).item()
    _, parts = objective.model_loss(out, batch[PAIR_EDGE_TYPE].y)
    assert parts["L_A"] == pytest.approx(expected, rel=1e-5)


def test_kd_ablation_and_baseline_losses(setup):
    batch, rel2id = setup
    kd = ObjectivesConfig(distillation="kd", distill_layers=[6])
    model = DocREModel(ModelConfig(), rel2id, **kd.model_outputs()).train()
    objective = DocREObjective(kd, model.channels, model.distill_layers)
    assert not objective.adversarial and len(objective.discriminators) == 0
    assert sorted(objective.student_heads) == ["6"]
    out = model(batch)
    assert objective.discriminator_loss(out) is None
    _, parts = objective.model_loss(out, batch[PAIR_EDGE_TYPE].y)
    assert 0.0 <= parts["L_A"] <= 2.0            # a cosine distance

    base_cfg = ObjectivesConfig()
    base = DocREModel(ModelConfig(baseline=True), rel2id,
                      **base_cfg.model_outputs(baseline=True)).train()
    base_objective = DocREObjective(base_cfg, base.channels, base.distill_layers)
    _, parts = base_objective.model_loss(base(batch), batch[PAIR_EDGE_TYPE].y)
    assert set(parts) == {"L_R", "loss"} and parts["L_R"] == parts["loss"]
