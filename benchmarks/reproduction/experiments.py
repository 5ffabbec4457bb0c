"""The experiment table: every run of the reproduction, as config overrides of one preset's base config.

Every experiment is an ordinary simulator run of the same harness (same data, partitions, topology,
evaluation), so an experiment is nothing but a name, a report section and dotted-key overrides —
mostly ``algorithm.name``. Keeping the table apart from running and reporting lets the tests check
every config of both presets without running any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.reproduction import ROOT
from edge_mcepl.profiles import load_profile, policy_structure

REFERENCE = ROOT.parent / "shared" / "reference" / "mcepl-paper-setting"


@dataclass(frozen=True)
class Experiment:
    """One run of the reproduction: the overrides that make it differ from the preset's base config."""

    key: str  # folder name and plot label
    group: str  # report section
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)


def paper_partition(k: int) -> dict[str, Any]:
    """The reference setting's shards for k classes per agent (the paper's own partition files)."""
    return {"data.classes_file": str(REFERENCE / f"classes_per_agent_{k}.txt"),
            "data.train_counts_file": str(REFERENCE / f"train_counts_{k}.txt"),
            "data.test_counts_file": str(REFERENCE / f"test_counts_{k}.txt")}


# The paper gives no step size for the weight-based baselines. 0.2 beat the config default 0.05 for
# both DSGD and Dis-PFL in the quick setting (the "sweep" table), so the main tables use it.
BASELINE_LR = 0.2


def partition(preset: str, k: int) -> dict[str, Any]:
    """k classes per agent: the reference shards (full) or a seeded label-skew partition (quick)."""
    return paper_partition(k) if preset == "full" else {"data.classes_per_agent": k}


PROFILE_MIX = ("rpi4", "rpi5", "jetson-orin-nano", "laptop", "gpu-workstation")


# The unstructured mix the archived hetero-profiles runs used: the conv retention each profile's policy
# gave before ordered width (an estimate of each device's share of the MACs, clamped to 0.05–0.5).
UNSTRUCTURED_MIX = (("rpi4", 0.3), ("rpi5", 0.4), ("jetson-orin-nano", 0.45), ("laptop", 0.5),
                    ("gpu-workstation", 0.5))


def profile_mix(model: str = "alexnet-cifar") -> list[tuple[str, float]]:
    """(profile, width) of a lab mixing the bundled device profiles, agents assigned round-robin —
    each width is what ``edge-mcepl join --profile NAME`` picks (its structure policy)."""
    return [(name, policy_structure(load_profile(name), model).width) for name in PROFILE_MIX]


# Full preset: experiment → its rerun on a second machine (mcepl-k4's name predates the "-rerun" keys).
RERUNS = {"mcepl-k3": "mcepl-k3-rerun", "mcepl-k5": "mcepl-k5-rerun", "local-only-k4": "local-only-k4-rerun",
          "hetero-profiles": "hetero-profiles-rerun", "mcepl-k4": "mcepl-k4-again"}


def experiments(preset: str) -> list[Experiment]:
    """The experiment list of a preset. ``quick`` keeps the 4-class setting only."""
    ks = (3, 4, 5) if preset == "full" else (4,)
    mix = profile_mix()
    out = []
    for k in ks:
        part = partition(preset, k)
        out += [
            Experiment(f"mcepl-k{k}", f"main-k{k}", "MCE-PL", part),
            Experiment(f"dsgd-k{k}", f"main-k{k}", f"DSGD (Metropolis, fp32, weight_lr {BASELINE_LR:g})",
                       {**part, "algorithm.name": "dsgd", "algorithm.weight_lr": BASELINE_LR}),
            Experiment(f"dispfl-k{k}", f"main-k{k}", f"Dis-PFL (masked fp32, weight_lr {BASELINE_LR:g})",
                       {**part, "algorithm.name": "dispfl", "algorithm.weight_lr": BASELINE_LR}),
            Experiment(f"local-only-k{k}", f"main-k{k}", "Local-only masks", {**part, "algorithm.name": "local_only"}),
        ]
    # Same learning as mcepl-k4 bit for bit (tested); only the bytes on the wire differ.
    out.append(Experiment("mcepl-k4-rice", "main-k4", "MCE-PL, Rice-coded masks",
                          {**partition(preset, 4), "algorithm.mask_codec": "rice"}))
    # Delta-coded masks (docs/codec.md): the keyframe interval is the only knob, and it changes bytes only.
    out += [Experiment(f"mcepl-k4-delta{suffix}", "main-k4", f"MCE-PL, delta-coded masks, keyframe every {every}",
                       {**partition(preset, 4), "algorithm.mask_codec": "delta", "algorithm.keyframe_every": every})
            for suffix, every in (("", 50), ("-kf100", 100))]
    out += [
        Experiment("ablation-no-agg-tensor", "ablation", "MCE-PL, no aggregation tensor (m̄ ≡ 0 in y)",
                   {"algorithm.aggregation_tensor": False}),
        Experiment("ablation-no-consensus", "ablation", "MCE-PL, no consensus step (η₂ = 0)",
                   {"algorithm.consensus_lr": 0.0}),
        Experiment("ablation-mask-averaging", "ablation",
                   "Direct averaging of binary masks (vote), no aggregation tensor",
                   {"algorithm.name": "mask_averaging"}),
        Experiment("ablation-filter-drop", "ablation", "MCE-PL + filter drop (structured preset)",
                   {"algorithm.preset": "structured"}),
        Experiment("ablation-group-lasso", "ablation", "MCE-PL + filter drop + group lasso λ=1e-3",
                   {"algorithm.preset": "structured", "algorithm.group_lasso": 1e-3}),
        Experiment("dslth-weights-dense", "dslth", "Weight training, dense, same init, no neighbours",
                   {"algorithm.name": "weight_training"}),
        Experiment("dslth-weights-pruned", "dslth", "Weight training, magnitude-pruned to MCE-PL density",
                   {"algorithm.name": "weight_training", "algorithm.prune": True}),
        Experiment("hetero-profiles", "hetero",
                   "MCE-PL, unstructured device-profile mix: conv retention "
                   + " / ".join(f"{n} {r:g}" for n, r in UNSTRUCTURED_MIX),
                   {"retention.conv": [r for _, r in UNSTRUCTURED_MIX]}),
        # Capability-sized subnetworks (docs/structured.md): each profile's width, conv retention 0.3 inside.
        Experiment("structured-ordered", "structured",
                   "MCE-PL, ordered width per profile: " + " / ".join(f"{n} {w:g}" for n, w in mix),
                   {"retention.width": [w for _, w in mix]}),
        Experiment("structured-ordered-delta", "structured", "MCE-PL, ordered width per profile, delta-coded masks",
                   {"retention.width": [w for _, w in mix], "algorithm.mask_codec": "delta",
                    "algorithm.keyframe_every": 50}),
        Experiment("structured-learned", "structured", "MCE-PL, learned filter selection, same widths",
                   {"retention.width": [w for _, w in mix], "algorithm.name": "learned_filters"}),
        # A what-if read on test data, so not used to pick a default: exported MACs do not depend on the
        # retention inside the kept filters, so a narrow device could keep more of them for free.
        Experiment("structured-ordered-r05", "structured", "MCE-PL, ordered width, conv retention 0.5 inside",
                   {"retention.width": [w for _, w in mix], "retention.conv": 0.5}),
        Experiment("heterofl-profiles", "structured",
                   f"HeteroFL-style fp32 width baseline, same widths (weight_lr {BASELINE_LR:g})",
                   {"retention.width": [w for _, w in mix], "algorithm.name": "heterofl",
                    "algorithm.weight_lr": BASELINE_LR}),
    ]
    if preset == "quick":
        # Why the baselines run at BASELINE_LR: the same runs at the config default weight_lr.
        out += [Experiment(f"sweep-{name}-lr{lr:g}", "sweep", f"{label}, weight_lr {lr:g}",
                           {**partition(preset, 4), "algorithm.name": name, "algorithm.weight_lr": lr})
                for name, label in (("dsgd", "DSGD"), ("dispfl", "Dis-PFL")) for lr in (0.05,)]
    if preset == "full":
        # Why MCE-PL falls short of the paper's headline: one knob at a time, everything else as mcepl-k4.
        out += [
            Experiment("investigate-data-full", "investigation", "MCE-PL, full shard counts (data_fraction 1.0)",
                       {"data.data_fraction": 1.0}),
            Experiment("investigate-retention-0.5", "investigation", "MCE-PL, conv retention 0.5 for every agent",
                       {"retention.conv": 0.5}),
            Experiment("investigate-local-steps-2", "investigation", "MCE-PL, 2 local steps per round",
                       {"algorithm.local_steps": 2}),
            Experiment("investigate-local-steps-4", "investigation", "MCE-PL, 4 local steps per round",
                       {"algorithm.local_steps": 4}),
            Experiment("investigate-per-agent-scores", "investigation",
                       "MCE-PL, each agent's scores from its own seed", {"per_agent_scores": True}),
        ]
        # The same configs again on other hardware (CPU vs GPU, see the run-times table): how far a
        # result moves with the kernels' floating-point order — the spread to read the tables with.
        out += [Experiment(RERUNS[e.key], "rerun", f"{e.label} — same config, other hardware", e.overrides)
                for e in out if e.key in RERUNS]
    return out
