"""Types of the public names of ``autonas_modes``.

Generated from ``_HOMES`` in ``__init__.py`` by ``tools/write_public_stubs.py``: do not edit.
"""

from .apply import apply_mode as apply_mode
from .constraints import ModelConstraints as ModelConstraints
from .constraints import ModelCosts as ModelCosts
from .costs import inference_flops as inference_flops
from .costs import param_count as param_count
from .distributed import TorchRanks as TorchRanks
from .errors import ApplyModeError as ApplyModeError
from .errors import InvalidStateError as InvalidStateError
from .errors import ModesError as ModesError
from .errors import NotConvertedError as NotConvertedError
from .io import restore as restore
from .io import save as save
from .latency import LatencyInterpolator as LatencyInterpolator
from .latency import measure_latency as measure_latency
from .mode import NAS_REGISTRY as NAS_REGISTRY
from .mode import ModeDescriptor as ModeDescriptor
from .mode import ModeRegistry as ModeRegistry
from .mode import get_mode_descriptor as get_mode_descriptor
from .nas import AutoNASModeDescriptor as AutoNASModeDescriptor
from .nas import ExportModeDescriptor as ExportModeDescriptor
from .nas import convert_autonas_searchspace as convert_autonas_searchspace
from .nas import convert_searchspace as convert_searchspace
from .nas import restore_autonas_searchspace as restore_autonas_searchspace
from .nas import restore_searchspace as restore_searchspace
from .nas import update_autonas_metadata as update_autonas_metadata
from .onnx_export import export_onnx as export_onnx
from .profiling import num2hrb as num2hrb
from .profiling import profile as profile
from .sampling import centroid as centroid
from .searching import search as search
from .state import StateManager as StateManager
from .state import autonas_state as autonas_state
from .state import get_mode as get_mode
from .state import restore_from_autonas_state as restore_from_autonas_state
from .workflow import convert as convert
from .workflow import export as export
from .workflow import get_subnet_config as get_subnet_config
from .workflow import is_configurable as is_configurable
from .workflow import is_dynamic as is_dynamic
from .workflow import named_hparams as named_hparams
from .workflow import print_search_space_summary as print_search_space_summary
from .workflow import replace_forward as replace_forward
from .workflow import sample as sample
from .workflow import sample_and_reset as sample_and_reset
from .workflow import search_space_size as search_space_size
from .workflow import select as select
from .workflow import sort_parameters as sort_parameters

__version__: str
