"""dralign objectives inside TRL's DPOTrainer (dralign.integrations.trl), against TRL itself.

Tiny offline Llama models (policy and reference from different seeds, so the loss is not log 2),
a small in-memory preference set, CPU only, no downloads.
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402

import dralign  # noqa: E402
from dralign.integrations.trl import (  # noqa: E402
    OBJECTIVE_STATE_FILE,
    DPOTrainer,
    DralignDPOConfig,
    UnsupportedObjectiveError,
)
from dralign.modeling import completion_logps  # noqa: E402
from dralign.modeling.tiny import tiny_model  # noqa: E402

N = 8


def make_model(tok, seed):
    model = tiny_model("llama", vocab_size=len(tok), hidden=32, layers=1, seed=seed)
    model.config.pad_token_id = tok.pad_token_id
    model.config.eos_token_id = tok.eos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model


def rows(**columns):
    """N pairs of different lengths, plus optional extra columns (name -> list of N values)."""
    out = []
    for i in range(N):
        out.append(
            {
                "prompt": f"Human: question {i}, please answer? Assistant:",
                "chosen": " good kind" + " very" * (i % 3) + ".",
                "rejected": " bad lazy" + " sad" * (i % 2) + ".",
            }
        )
    for name, values in columns.items():
        for row, value in zip(out, values):
            row[name] = value
    return out


def config(tmp_path, cls=trl.DPOConfig, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        per_device_train_batch_size=N,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        learning_rate=1e-3,
        seed=0,
    )
    settings.update(overrides)
    return cls(**settings)


def trainer(cls, tok, tmp_path, data, *, args=None, **kwargs):
    return cls(
        make_model(tok, 0),
        ref_model=make_model(tok, 1),
        args=args or config(tmp_path),
        train_dataset=Dataset.from_list(data),
        processing_class=tok,
        **kwargs,
    )


def batch_loss(t, backward=False):
    """compute_loss on all N rows as one batch, through the trainer's own column removal and
    collator (what its dataloader does, without shuffling)."""
    data = t._remove_unused_columns(t.train_dataset)
    batch = t._prepare_inputs(t.data_collator([data[i] for i in range(N)]))
    loss = t.compute_loss(t.model, batch)
    if backward:
        loss.backward()
    return loss


def train_logs(t):
    t.train()
    return [h for h in t.state.log_history if "loss" in h]


# ---------------------------------------------------------------------------- parity with TRL
def test_dpo_reproduces_trl_sigmoid_loss_gradient_and_logs(tok, tmp_path):
    stock = trainer(trl.DPOTrainer, tok, tmp_path / "trl", rows(), args=config(tmp_path / "trl", beta=0.2))
    ours = trainer(
        DPOTrainer,
        tok,
        tmp_path / "ours",
        rows(),
        args=config(tmp_path / "ours"),
        objective="dpo",
        objective_kwargs={"beta": 0.2},
    )
    ours.model.train(), stock.model.train()
    a, b = batch_loss(stock, backward=True), batch_loss(ours, backward=True)
    assert abs(a.item() - math.log(2)) > 1e-3  # policy and reference differ
    assert b.item() == pytest.approx(a.item(), abs=1e-6)
    for (name, p), q in zip(stock.model.named_parameters(), ours.model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)
    stock.model.zero_grad(), ours.model.zero_grad()

    logs_a, logs_b = train_logs(stock), train_logs(ours)
    assert len(logs_a) == len(logs_b) == 2
    for la, lb in zip(logs_a, logs_b):
        for key in (
            "loss",
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "rewards/accuracies",
            "logps/chosen",
            "logps/rejected",
            "entropy",
            "mean_token_accuracy",
        ):
            assert lb[key] == pytest.approx(la[key], abs=1e-5), key


@pytest.mark.parametrize(
    "loss_type, extra",
    [
        ("hinge", {}),
        ("ipo", {}),
        ("robust", {"label_smoothing": 0.2}),
        ("aot", {"label_smoothing": 0.1}),
        ("sigmoid", {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.3}),
        ("sigmoid", {"f_divergence_type": "js_divergence", "ld_alpha": 0.5}),
    ],
)
def test_trl_loss_type_without_objective_maps_to_its_preset(tok, tmp_path, loss_type, extra):
    args = dict(loss_type=[loss_type], **extra)
    stock = trainer(trl.DPOTrainer, tok, tmp_path, rows(), args=config(tmp_path / "a", **args))
    ours = trainer(DPOTrainer, tok, tmp_path, rows(), args=config(tmp_path / "b", **args))
    assert batch_loss(ours).item() == pytest.approx(batch_loss(stock).item(), rel=1e-6, abs=1e-6)


def test_precomputed_reference_logps_are_the_reference(tok, tmp_path):
    live = trainer(DPOTrainer, tok, tmp_path, rows(), args=config(tmp_path / "a"), objective="kldpo")
    cached = trainer(
        DPOTrainer, tok, tmp_path, rows(), objective="kldpo", args=config(tmp_path / "b", precompute_ref_log_probs=True)
    )
    assert "ref_chosen_logps" in cached.train_dataset.column_names
    assert batch_loss(cached).item() == pytest.approx(batch_loss(live).item(), abs=1e-6)


# ---------------------------------------------------------------------------- training
def test_kldpo_trains_and_logs_robust_metrics(tok, tmp_path):
    t = trainer(
        DPOTrainer,
        tok,
        tmp_path,
        rows(),
        args=config(tmp_path, max_steps=3, per_device_train_batch_size=4),
        objective="kldpo",
        objective_kwargs={"tau": 0.5},
    )
    assert t.dralign_objective.robust == "kl" and t.dralign_objective.aggregator.tau == 0.5
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    logs = train_logs(t)
    assert len(logs) == 3
    assert all(math.isfinite(h["loss"]) for h in logs)
    assert all(0 < h["robust/ess"] <= 1 + 1e-6 and h["robust/weight_max"] >= 1 - 1e-6 for h in logs)
    assert {"rewards/margins", "rewards/accuracies", "logps/chosen"} <= set(logs[-1])
    assert any(not torch.equal(before[n], p) for n, p in t.model.named_parameters())


def test_group_dro_q_advances_is_checkpointed_and_restored(tok, tmp_path):
    data = rows(group=["north", "south"] * (N // 2))
    args = config(tmp_path, save_strategy="steps", save_steps=2)
    t = trainer(DPOTrainer, tok, tmp_path, data, args=args, objective="group-dro", objective_kwargs={"eta": 5.0})
    assert t.objective_columns.group_ids == {"north": 0, "south": 1}
    train_logs(t)
    q = t.dralign_state["q"]
    assert q.shape == (2,) and not torch.allclose(q, torch.full((2,), 0.5, dtype=q.dtype))
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert torch.equal(torch.load(checkpoint / OBJECTIVE_STATE_FILE)["q"], q)

    resumed = trainer(DPOTrainer, tok, tmp_path, data, args=args, objective="group-dro", objective_kwargs={"eta": 5.0})
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert torch.equal(resumed.dralign_state["q"], q)


# ---------------------------------------------------------------------------- extra columns
@pytest.mark.parametrize(
    "preset, column, off, on",
    [
        ("dora", "ratio", 0.0, 1.5),
        ("dora-reweight", "target_prob", 0.0, 0.8),
        ("dpo", "weight", 0.0, 1.0),
    ],
)
def test_extra_column_reaches_the_objective(tok, tmp_path, preset, column, off, on):
    """A row whose ratio / target_prob / weight is 0 has no effect on the loss: swapping its
    chosen and rejected responses leaves the loss unchanged, while the same swap changes it
    when the row counts."""

    def loss(values, swap):
        data = rows(**{column: values})
        for i in swap:
            data[i]["chosen"], data[i]["rejected"] = data[i]["rejected"], data[i]["chosen"]
        t = trainer(DPOTrainer, tok, tmp_path, data, objective=preset)
        return batch_loss(t).item()

    mixed = [off if i % 2 else on for i in range(N)]  # odd rows switched off
    assert loss(mixed, swap=[1, 3]) == pytest.approx(loss(mixed, swap=[]), abs=1e-6)
    assert abs(loss([on] * N, swap=[1, 3]) - loss([on] * N, swap=[])) > 1e-4


def test_dora_ratio_metric_and_evaluation(tok, tmp_path):
    ratios = [0.5, 1.5] * (N // 2)
    t = DPOTrainer(
        make_model(tok, 0),
        ref_model=make_model(tok, 1),
        args=config(tmp_path, max_steps=1),
        train_dataset=Dataset.from_list(rows(ratio=ratios)),
        eval_dataset=Dataset.from_list(rows(ratio=ratios)),
        processing_class=tok,
        objective="dora",
    )
    logs = train_logs(t)
    assert logs[0]["ratio/mean"] == pytest.approx(1.0)
    metrics = t.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_ratio/mean"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------- configuration
def test_config_fields_choose_the_objective(tok, tmp_path):
    args = config(tmp_path, cls=DralignDPOConfig, objective="fdpo-alpha", objective_kwargs='{"alpha": 0.3}', beta=0.05)
    t = trainer(DPOTrainer, tok, tmp_path, rows(), args=args)
    obj = t.dralign_objective
    assert (obj.divergence, obj.score.alpha, obj.beta) == ("alpha", 0.3, 0.05)
    assert t.beta == 0.05


def test_trl_loss_settings_are_ignored_with_a_warning(tok, tmp_path):
    with pytest.warns(UserWarning, match="loss_type=\\['hinge'\\]"):
        t = trainer(
            DPOTrainer,
            tok,
            tmp_path,
            rows(),
            args=config(tmp_path, loss_type=["hinge"]),
            objective=dralign.Objective.from_preset("dpo"),
        )
    assert t.dralign_objective.link == "sigmoid"


def test_ld_alpha_down_weights_the_longer_tail():
    """The bridge reduces TRL's per-token log-probs with dralign's `completion_logps`."""
    per_token = torch.tensor([[-1.0, -1.0, -1.0, -1.0], [-2.0, -2.0, 0.0, 0.0]])
    mask = torch.tensor([[0, 1, 1, 1], [0, 1, 0, 0]])
    assert completion_logps(per_token, mask).sum.tolist() == [-3.0, -2.0]
    assert completion_logps(per_token, mask, ld_alpha=0.5).sum.tolist() == [-2.0, -2.0]


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "kwargs, data, match",
    [
        ({"objective": "aot-unpaired"}, {}, "unpaired"),
        ({"objective": "wdpo"}, {}, "input embeddings"),
        ({"objective": "dora"}, {}, "density ratio"),
        ({"objective": "group-dro"}, {}, "group per row"),
        ({"objective": "aot"}, {"weight": [1.0] * N}, "sorted quantiles"),
        ({"objective": "dpo", "args": {"use_weighting": True}}, {}, "use_weighting"),
        ({"args": {"loss_type": ["bco_pair"]}}, {}, "no dralign equivalent"),
        ({"args": {"loss_type": ["aot_unpaired"]}}, {}, "unpaired"),
        ({"args": {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 1.0]}}, {}, "several TRL losses"),
    ],
)
def test_unsupported_setups_are_refused_with_the_reason(tok, tmp_path, kwargs, data, match):
    kwargs = dict(kwargs)
    args = config(tmp_path, **kwargs.pop("args", {}))
    with pytest.raises(UnsupportedObjectiveError, match=match):
        DPOTrainer(
            make_model(tok, 0), args=args, train_dataset=Dataset.from_list(rows(**data)), processing_class=tok, **kwargs
        )


def test_bridge_numbers_groups_and_forms_ratios_as_dralign_train():
    """One rule for both paths (dralign.data.metadata): groups numbered integers first,
    numerically ("9" before "10"), then strings; h = target_prob / the TRAINING prior, for
    held-out rows too."""
    from dralign.data import number_names
    from dralign.integrations.trl import plan_columns

    train = Dataset.from_dict(
        {
            "prompt": ["p"] * 4,
            "chosen": ["a"] * 4,
            "rejected": ["b"] * 4,
            "group": ["10", "9", "10", "x"],
            "target_prob": [0.2, 0.6, 0.2, 0.6],
        }
    )
    groups = plan_columns(dralign.Objective.from_preset("group-dro"), train)
    assert groups.group_ids == {"9": 0, "10": 1, "x": 2} == number_names([], train["group"])[1]
    dora = plan_columns(dralign.Objective.from_preset("dora"), train)
    assert dora.target_prior == pytest.approx(0.4)
    held_out = dora.tensors([{"target_prob": 0.8}, {"target_prob": 0.4}])
    assert held_out["dralign_ratio"].tolist() == pytest.approx([2.0, 1.0])


@pytest.mark.parametrize(
    "fields",
    [
        {"loss_type": ["hinge"]},
        {"loss_type": ["robust"], "label_smoothing": 0.2},
        {"loss_type": ["sigmoid"], "f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.3},
        {"loss_type": ["aot"], "label_smoothing": 0.1},
        {"loss_type": ["ipo"], "label_smoothing": 0.1},
        {"loss_type": ["sigmoid"], "f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 1.0},
    ],
)
def test_the_drop_in_and_a_dpo_config_yaml_translate_alike(tmp_path, fields):
    """One translation (dralign.objectives.trl.trl_loss) behind both paths: the objective the
    DPOTrainer drop-in runs is the one `dralign train --config dpo.yaml` builds."""
    from dralign.integrations.trl import objective_from_trl_config
    from dralign.train.trl_config import translate

    out = translate({**fields, "beta": 0.3}, log=lambda _: None)
    params = {k: out[k] for k in ("divergence", "alpha", "label_smoothing") if k in out}
    yaml_path = dralign.Objective.from_preset(out["method"], beta=out["beta"], **params)
    drop_in = objective_from_trl_config(config(tmp_path, beta=0.3, **fields))

    def what(o):
        return o.divergence, o.coupling, o.link, o.robust, o.parameters()

    assert what(drop_in) == what(yaml_path)


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"loss_type": ["ipo"], "loss_weights": [2.0]}, "rescales the learning rate"),
        ({"loss_type": ["ipo"], "f_divergence_type": "js_divergence"}, "length-normalises"),
    ],
)
def test_the_drop_in_refuses_what_a_dpo_config_yaml_refuses(tmp_path, fields, match):
    from dralign.config import ConfigError
    from dralign.integrations.trl import objective_from_trl_config
    from dralign.train.trl_config import translate

    with pytest.raises(ConfigError, match=match):
        translate({**fields, "learning_rate": 1e-6})
    with pytest.raises(UnsupportedObjectiveError, match=match):
        objective_from_trl_config(config(tmp_path, **fields))
