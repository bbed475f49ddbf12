"""Types of the public names of ``autonas``.

Generated from ``_HOMES`` in ``__init__.py`` by ``tools/write_public_stubs.py``: do not edit.
"""

from autonas_config import AutoNASConfig as AutoNASConfig
from autonas_dynamic import AlreadyConvertedError as AlreadyConvertedError
from autonas_dynamic import CostModelError as CostModelError
from autonas_dynamic import DynamicError as DynamicError
from autonas_dynamic import UnsupportedModelError as UnsupportedModelError
from autonas_modes import ApplyModeError as ApplyModeError
from autonas_modes import AutoNASModeDescriptor as AutoNASModeDescriptor
from autonas_modes import InvalidStateError as InvalidStateError
from autonas_modes import ModesError as ModesError
from autonas_modes import NotConvertedError as NotConvertedError
from autonas_modes import autonas_state as autonas_state
from autonas_modes import centroid as centroid
from autonas_modes import convert as convert
from autonas_modes import convert_autonas_searchspace as convert_autonas_searchspace
from autonas_modes import convert_searchspace as convert_searchspace
from autonas_modes import export as export
from autonas_modes import export_onnx as export_onnx
from autonas_modes import get_subnet_config as get_subnet_config
from autonas_modes import inference_flops as inference_flops
from autonas_modes import is_configurable as is_configurable
from autonas_modes import is_dynamic as is_dynamic
from autonas_modes import named_hparams as named_hparams
from autonas_modes import param_count as param_count
from autonas_modes import print_search_space_summary as print_search_space_summary
from autonas_modes import profile as profile
from autonas_modes import replace_forward as replace_forward
from autonas_modes import restore as restore
from autonas_modes import restore_autonas_searchspace as restore_autonas_searchspace
from autonas_modes import restore_from_autonas_state as restore_from_autonas_state
from autonas_modes import restore_searchspace as restore_searchspace
from autonas_modes import sample as sample
from autonas_modes import sample_and_reset as sample_and_reset
from autonas_modes import save as save
from autonas_modes import search as search
from autonas_modes import search_space_size as search_space_size
from autonas_modes import select as select
from autonas_modes import sort_parameters as sort_parameters
from autonas_modes import update_autonas_metadata as update_autonas_metadata
from autonas_patch import AutoNASPatchManager as AutoNASPatchManager
from autonas_patch import enable_patches as enable_patches
from autonas_patch import is_patches_enabled as is_patches_enabled
from autonas_patch import no_patches as no_patches
from autonas_patch import sandwich as sandwich
from autonas_patch import set_patches_enabled as set_patches_enabled
from autonas_patch import soft_cross_entropy as soft_cross_entropy
from autonas_search import CheckpointError as CheckpointError
from autonas_search import ChoiceSpace as ChoiceSpace
from autonas_search import EvolveSearcher as EvolveSearcher
from autonas_search import IterativeSearcher as IterativeSearcher
from autonas_search import NoSatisfiedCandidateError as NoSatisfiedCandidateError
from autonas_search import RandomSearcher as RandomSearcher
from autonas_search import SearchError as SearchError

__version__: str
