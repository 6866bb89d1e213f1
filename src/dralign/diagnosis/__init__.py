"""`dralign diagnose`: look at a preference dataset before training, and say which method its
shift calls for, with the evidence.

    from dralign import diagnose
    d = diagnose(data="pairs.jsonl", eval="heldout.jsonl", target=["human"])
    d.lengths["longer_baseline_accuracy"], [a.recommendation for a in d.advice]

The data is read by the trainer's loader (`read.read_data`), measured on the tokenised pairs
(`measure`, `sources`, `signal`), and advised on (`advice`, citing `evidence`); `report`
renders the result. The package is named `diagnosis` so that `dralign.diagnose` stays the
function."""

from .advice import Advice
from .config import DiagnoseConfig, DiagnoseDataOptions, DiagnoseOptions
from .run import Diagnosis, diagnose

__all__ = [
    "Advice",
    "DiagnoseConfig",
    "DiagnoseDataOptions",
    "DiagnoseOptions",
    "Diagnosis",
    "diagnose",
    "run_diagnose",
]


def run_diagnose(cfg: DiagnoseConfig, console=None) -> Diagnosis:
    """The command: diagnose, print the report, write the JSON and PNG when asked."""
    from rich.console import Console

    from .report import print_diagnosis, write_outputs

    console = console or Console()
    result = diagnose(cfg, log=lambda text: console.print(text, markup=False))
    print_diagnosis(result, console)
    if cfg.diagnose.json:
        write_outputs(result, cfg.diagnose.json, console)
    return result
