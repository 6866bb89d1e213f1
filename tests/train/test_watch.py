"""The run's two warnings: a policy that has not moved after a warm-up, and overfitting."""

from __future__ import annotations

from dralign.config import build
from dralign.train import TrainConfig, train
from dralign.train.watch import Watch, overfitting, policy_distance, policy_stalled, warmup_steps


def _step(margin=0.0, chosen=0.0, rejected=0.0, loss=0.69, **extra):
    return {"loss": loss, "rewards/margins": margin, "rewards/chosen": chosen, "rewards/rejected": rejected, **extra}


def test_warmup_is_20_steps_or_a_tenth_of_a_short_run():
    assert warmup_steps(1000) == 20 and warmup_steps(100) == 10 and warmup_steps(5) == 2


def test_policy_distance_is_in_nats_per_response():
    # rewards are beta * log-ratios: with beta 0.1, a chosen reward of 0.003 is u+ = 0.03 nats
    assert abs(policy_distance(_step(margin=0.001, chosen=0.003, rejected=0.002), beta=0.1) - 0.03) < 1e-12
    assert policy_distance({"loss": 0.7}, beta=0.1) is None


def test_stalled_when_every_recent_step_is_near_the_reference():
    still = [_step(margin=1e-5, chosen=2e-5, rejected=1e-5) for _ in range(5)]
    assert policy_stalled(still, beta=0.1)
    assert not policy_stalled(still[:4], beta=0.1)  # too few steps to judge
    moved = still[:4] + [_step(margin=0.01, chosen=0.004, rejected=-0.006)]  # 0.1 nats apart
    assert not policy_stalled(moved, beta=0.1)
    assert not policy_stalled([{"loss": 0.69}] * 5, beta=0.1)  # no reward metrics: no verdict
    # log-ratios that moved together (margin ~ 0) are movement too
    assert not policy_stalled([_step(margin=0.0, chosen=0.05, rejected=0.05)] * 5, beta=0.1)


def test_overfitting_needs_held_out_loss_rising_while_training_loss_falls():
    def run(eval_losses, train_losses):
        records = []
        for ev, tr in zip(eval_losses, train_losses):
            records += [_step(loss=tr + 0.01), _step(loss=tr - 0.01, **{"eval/loss": ev})]
        return records

    assert overfitting(run([0.60, 0.62, 0.65], [0.60, 0.50, 0.40]))
    assert not overfitting(run([0.60, 0.62, 0.61], [0.60, 0.50, 0.40]))  # held-out did not rise every time
    assert not overfitting(run([0.60, 0.62, 0.65], [0.40, 0.50, 0.60]))  # training loss rose too
    assert not overfitting(run([0.60, 0.62], [0.60, 0.50]))  # two evaluations are not a trend
    groupless = [
        {**r, "eval/loss_without_groups": r.pop("eval/loss")} if "eval/loss" in r else r
        for r in run([0.60, 0.62, 0.65], [0.60, 0.50, 0.40])
    ]
    assert overfitting(groupless)


def test_watch_warns_once_each():
    messages = []
    watch = Watch(total_steps=100, beta=0.1, lr=5e-6, warn=messages.append)
    for step in range(1, 31):
        watch(step, _step())
    assert len(messages) == 1 and "--lr 5e-06" in messages[0] and "after 10 steps" in messages[0]
    for step, (ev, tr) in enumerate(zip([0.6, 0.62, 0.65, 0.7], [0.6, 0.5, 0.4, 0.3]), start=31):
        watch(step, _step(margin=1.0, chosen=1.0, rejected=-1.0, loss=tr, **{"eval/loss": ev}))
    assert len(messages) == 2 and "overfitting" in messages[1]


def test_training_with_a_vanishing_learning_rate_warns(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    cfg = build(
        TrainConfig,
        {
            "model": tiny_model_dir(),
            "data": str(pref_jsonl),
            "output_dir": str(tmp_path / "run"),
            "max_steps": 6,
            "batch_size": 2,
            "max_length": 48,
            "lr": 1e-12,
            "progress": False,
            "ref_cache": False,
        },
    )
    train(cfg)
    out = capsys.readouterr().out
    assert out.count("the policy has not moved") == 1 and "--lr 1e-12" in out
