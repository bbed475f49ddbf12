"""autonas_search: architecture and hyper-parameter search over any search space, without torch.

A search space is anything with `hparams()`, `config()` and `select(config)` (`SearchSpace`);
`ChoiceSpace` is the ready-made one over a dict of choices. Searchers (`RandomSearcher`,
`EvolveSearcher`) maximise `score_func(config)` under named constraints
(`{"cost": (cost_function, limit)}`), keep every evaluated candidate, checkpoint their state as
JSON and resume exactly, and give the Pareto front of score against constrained costs
(`EvolveSearcher` with `pareto=True` searches for that front).

Extension points, for searching other things (autonas-modes searches torch models this way):

- the space: any `SearchSpace`. The searcher calls `space.select(candidate)` before it evaluates
  the candidate's constraints and score, so functions may read the selected state (a model's
  active subnet) rather than the config they are handed.
- the constraints: a mapping of `(cost_function, limit)` or a (subclassed) `ConstraintsFunc`;
  override `build_constraints_func` to construct it from something else.
- the search config: extend the `default_search_config` property (new keys with defaults) and
  `sanitize_search_config` (their checks); unknown keys stay an error.
- the state: extend the `default_state_dict` property; every key is an attribute, checkpointed.
- the flow: `before_search` (e.g. calibrate a model), `run_search`, `after_search`;
  per iteration `before_step`, `run_step`, `after_step`, `early_stop`; candidates come from
  `propose(limit)` (a batch decided before evaluation) through `sample()`; scores from
  `eval_score(config)`. `EvolveSearcher.predictor()` supplies the model (a `ScorePredictor` by
  default) that ranks children before they are scored.
- `checkpoint_rank` names one checkpoint per process when several search together.
- `ranks` (a `Ranks`: rank, size, `all_gather`) lets several processes run one search: each
  batch's candidates are scored across the ranks (`score_on="one_rank"`) or on every rank
  (`"every_rank"`), and every rank ends with the same state; rank 0 alone reads and writes the
  checkpoint.

An `executor` (any `concurrent.futures.Executor`) evaluates each proposed batch in parallel with
results identical to a serial run; it is for spaces whose constraint and score functions depend
only on the config they are handed (the workers never call `select`).
"""

from importlib.metadata import version as _version

from .base import BaseSearcher
from .checkpoint import checkpoint_path
from .constraints import ConstraintsFunc, CostFunc, Limit
from .errors import CheckpointError, NoSatisfiedCandidateError, SearchError
from .evolve import EvolveSearcher
from .hashing import config_hash
from .iterative import IterativeSearcher
from .pareto import hypervolume, pareto_front, pareto_order
from .predictor import ScorePredictor
from .random_search import RandomSearcher
from .ranks import Ranks
from .space import ChoiceSpace, SearchSpace

__version__ = _version("autonas-search")

__all__ = [
    "BaseSearcher",
    "CheckpointError",
    "ChoiceSpace",
    "ConstraintsFunc",
    "CostFunc",
    "EvolveSearcher",
    "IterativeSearcher",
    "Limit",
    "NoSatisfiedCandidateError",
    "RandomSearcher",
    "Ranks",
    "ScorePredictor",
    "SearchError",
    "SearchSpace",
    "checkpoint_path",
    "config_hash",
    "hypervolume",
    "pareto_front",
    "pareto_order",
]
