"""Makes ``transformers.from_pretrained`` load directories llmint8 wrote in processes that never
import llmint8.

transformers finds a quantization method by the ``quant_method`` of a model's config in two
registries (`transformers.quantizers.auto`); third-party methods are added with its public
`register_quantization_config` / `register_quantizer`, which needs the method's package imported
first. A bitsandbytes user never imports anything, so llmint8's wheel installs
``llmint8_autoload.pth``, which Python's `site` module runs at start-up: it imports this module,
which imports nothing heavy (no torch, no transformers, not llmint8) and only waits for
`transformers.quantizers.auto` to be imported. Then it adds placeholders for ``"llmint8"`` to
the two registries; the first use of one (inside ``from_pretrained``, when transformers is fully
imported) imports `llmint8.integrations.transformers`, which registers the real classes.

llmint8's configs also carry bitsandbytes' 8-bit fields (``load_in_8bit``, ...), so that where
llmint8 is missing transformers reads them as bitsandbytes directories (the same tensors) instead
of skipping an unknown method. transformers resolves ``load_in_8bit`` before ``quant_method``, so
the bitsandbytes 8-bit entry of the config registry is wrapped too: a dict naming
``quant_method: llmint8`` goes to llmint8, every other one to bitsandbytes' config as before.

Nothing here may break an interpreter's start or transformers' import: every failure becomes a
warning, and transformers then behaves as without llmint8.
"""

import importlib.machinery
import sys
import warnings

_TARGET = "transformers.quantizers.auto"
_METHOD = "llmint8"
_BITSANDBYTES_8BIT = "bitsandbytes_8bit"  # transformers' key for configs with load_in_8bit


def _integration():
    import llmint8.integrations.transformers as integration  # registers the real classes

    return integration


class _ConfigPlaceholder:
    """Stands in for `Int8Config` in transformers' config registry until first used."""

    @classmethod
    def from_dict(cls, config_dict, *args, **kwargs):
        return _integration().Int8Config.from_dict(config_dict, *args, **kwargs)


def _quantizer_placeholder(quantization_config, **kwargs):
    """Stands in for `Int8HfQuantizer` in transformers' quantizer registry until first used."""
    return _integration().Int8HfQuantizer(quantization_config, **kwargs)


def _routing_bitsandbytes_config(original):
    """bitsandbytes' 8-bit config class, but a dict that names llmint8 becomes llmint8's."""

    class _RoutingConfig:
        routes_llmint8 = True

        @classmethod
        def from_dict(cls, config_dict, *args, **kwargs):
            if config_dict.get("quant_method") == _METHOD:
                return _ConfigPlaceholder.from_dict(config_dict, *args, **kwargs)
            return original.from_dict(config_dict, *args, **kwargs)

    return _RoutingConfig


def _add_placeholders(auto) -> None:
    configs, quantizers = auto.AUTO_QUANTIZATION_CONFIG_MAPPING, auto.AUTO_QUANTIZER_MAPPING
    if _METHOD not in configs and _METHOD not in quantizers:
        configs[_METHOD] = _ConfigPlaceholder
        quantizers[_METHOD] = _quantizer_placeholder
    original = configs.get(_BITSANDBYTES_8BIT)
    if original is not None and not getattr(original, "routes_llmint8", False):
        configs[_BITSANDBYTES_8BIT] = _routing_bitsandbytes_config(original)


class _Loader:
    """The real loader of `transformers.quantizers.auto`, followed by `_add_placeholders`."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        try:
            _add_placeholders(module)
        except Exception as err:  # never break transformers' import
            warnings.warn(f"llmint8: could not register with transformers ({err})", stacklevel=2)


class _Finder:
    """A meta-path finder that answers for `transformers.quantizers.auto` alone, once."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        _uninstall()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader)
        return spec


def _uninstall() -> None:
    if _Finder in sys.meta_path:
        sys.meta_path.remove(_Finder)


def install() -> None:
    """Registers llmint8 with transformers now if transformers' registries are loaded, else
    when they are."""
    auto = sys.modules.get(_TARGET)
    if auto is not None:
        _add_placeholders(auto)
    elif _Finder not in sys.meta_path:
        sys.meta_path.insert(0, _Finder)


try:
    install()
except Exception as error:  # never break the interpreter's start
    warnings.warn(f"llmint8: start-up hook failed ({error})", stacklevel=1)
