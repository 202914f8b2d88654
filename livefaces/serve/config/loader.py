"""Reading a ``serve`` config file: YAML (the only PyYAML import of the package) to the model,
every mistake reported as ``FILE:LINE: dotted.field: what is wrong``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from ...detect.options import DetectorOptions
from ...errors import ConfigError
from ...redact import redact_url
from ...specs import source_problem
from .checks import Check
from .fields import (
    CAMERA_FIELDS,
    DEFAULT_FIELDS,
    DETECTOR_FIELDS,
    MQTT_FIELDS,
    NAME_RE,
    PEOPLE_FIELDS,
    TOP_FIELDS,
    WEB_FIELDS,
)
from .model import (
    CameraConfig,
    EngineCheck,
    MqttConfig,
    PeopleConfig,
    ServeConfig,
    WebConfig,
    needs_token,
    smallest_face,
)

#: a config file bigger than this is refused before it is parsed (real ones are a few KiB)
MAX_FILE_BYTES = 1 << 20

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases (``*name``).

    Aliases let a few lines stand for an exponentially large value ("billion laughs"); nothing
    in this file format needs them (``defaults:`` shares camera settings), so the composer
    refuses the first one with its line instead of expanding anything.
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):  # type: ignore[no-untyped-call]
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not supported; write the value "
                "out (settings shared by all cameras go under 'defaults:')", event.start_mark)
        return super().compose_node(parent, index)  # type: ignore[no-untyped-call,no-any-return]


class _Validator:
    def __init__(self, filename: str, env: dict[str, str]):
        self.filename = filename
        self.env = env
        self.problems: list[str] = []
        self.nodes: dict[str, yaml.Node] = {}  # dotted field -> its value node (for lines)

    def problem(self, node: yaml.Node | None, path: str, msg: str) -> None:
        line = f"{node.start_mark.line + 1}" if node is not None else "?"
        self.problems.append(f"{self.filename}:{line}: {path}: {msg}" if path else
                             f"{self.filename}:{line}: {msg}")

    def mapping(self, node: yaml.Node, path: str) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """``{key: (key_node, value_node)}``; reports non-mappings and duplicate keys."""
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, "must be a mapping of 'key: value' lines")
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.problem(k, path, "keys must be plain names")
                continue
            if key in out:
                self.problem(k, _join(path, key),
                             f"given twice (first on line {out[key][0].start_mark.line + 1})")
                continue
            out[key] = (k, v)
        return out

    def value(self, node: yaml.Node) -> Any:
        """The Python value of a node, with ``${VAR}`` expanded in strings."""
        v = yaml.SafeLoader(b"").construct_object(node, deep=True)  # type: ignore[no-untyped-call]
        return self._expand(v)

    def _expand(self, v: Any) -> Any:
        if isinstance(v, str):
            return _ENV_RE.sub(lambda m: self.env.get(m.group(1), "\0" + m.group(1)), v)
        if isinstance(v, list):
            return [self._expand(x) for x in v]
        return v

    def fields(self, node: yaml.Node, path: str, spec: dict[str, Check],
               required: tuple[str, ...] = (), at: yaml.Node | None = None) -> dict[str, Any]:
        m = self.mapping(node, path)
        if m is None:
            return {}
        out: dict[str, Any] = {}
        for key, (knode, vnode) in m.items():
            fpath = _join(path, key)
            if key not in spec:
                self.problem(knode, fpath, "unknown setting (allowed: " + ", ".join(spec) + ")")
                continue
            self.nodes[fpath] = vnode
            try:
                raw = self.value(vnode)
            except yaml.YAMLError as e:
                self.problem(vnode, fpath, f"cannot read value ({e})")
                continue
            if isinstance(raw, str) and "\0" in raw:
                missing = re.findall(r"\0([A-Za-z0-9_]+)", raw)
                self.problem(vnode, fpath, f"environment variable {missing[0]} is not set")
                continue
            val, err = spec[key](raw)
            if err:
                shown = "<hidden>" if key in ("password", "token") else repr(raw)
                if key == "url" and isinstance(raw, str):
                    shown = repr(redact_url(raw))
                self.problem(vnode, fpath, f"{err} (got {shown})")
                continue
            out[key] = val
        for r in required:
            if r not in m:
                self.problem(at or node, path, f"'{r}' is required")
        return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None, *,
                check_machine: bool = False, engine_check: EngineCheck | None = None) -> ServeConfig:
    """Read and validate a serve config file; raises :class:`ConfigError` listing every mistake.

    Files bigger than :data:`MAX_FILE_BYTES` are refused unread. ``check_machine``: see
    :func:`parse_config`.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # bounded: also safe for /dev/zero or a pipe
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError([f"{p}: the file is bigger than {MAX_FILE_BYTES >> 20} MiB; "
                               "is it really a livefaces configuration?"])
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{p}: cannot read the file ({e.__class__.__name__}: {e})"]) from e
    return parse_config(text, filename=str(p), env=env, check_machine=check_machine,
                        engine_check=engine_check)


def parse_config(text: str, *, filename: str = "<config>", env: dict[str, str] | None = None,
                 check_machine: bool = False, engine_check: EngineCheck | None = None) -> ServeConfig:
    """Validate YAML ``text``; ``filename`` is used in the messages.

    Camera URLs are checked with :func:`livefaces.sources.source_problem`, the check
    :func:`~livefaces.sources.open_source` makes: the scheme, that the URL parses, and with
    ``check_machine`` that the files and folders of enabled cameras exist (relative paths
    against the current directory, as ``serve`` opens them). With ``check_machine``,
    ``engine_check(detector_options)`` (the caller's: ``livefaces.detect.engine.engine_problem``)
    says why the engine or device asked for cannot run here, reported at its line.
    """
    v = _Validator(filename, dict(os.environ) if env is None else env)
    try:
        root = yaml.compose(text, Loader=_NoAliasLoader)
    except RecursionError as e:
        raise ConfigError([f"{filename}: not valid YAML: nested too deeply"]) from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = mark.line + 1 if mark is not None else "?"
        raise ConfigError([f"{filename}:{line}: not valid YAML: {e.problem}"]) from e
    except yaml.YAMLError as e:
        raise ConfigError([f"{filename}: not valid YAML: {e}"]) from e
    if root is None:
        raise ConfigError([f"{filename}:1: the file is empty; it needs at least a 'cameras:' section"])
    top = v.mapping(root, "")
    if top is None:
        raise ConfigError(v.problems)
    for key, (knode, _) in top.items():
        if key not in TOP_FIELDS:
            v.problem(knode, key, "unknown section (allowed: " + ", ".join(TOP_FIELDS) + ")")

    dvals = v.fields(top["detector"][1], "detector", DETECTOR_FIELDS) if "detector" in top else {}
    defaults = {k: dvals[k] for k in ("min_face_size",) if k in dvals}
    if "defaults" in top:
        defaults.update(v.fields(top["defaults"][1], "defaults", DEFAULT_FIELDS))
    cameras: list[CameraConfig] = []
    if "cameras" not in top:
        v.problem(root, "cameras", "section is required (a mapping of camera name -> settings)")
    else:
        cnode = top["cameras"][1]
        cams = v.mapping(cnode, "cameras")
        if cams is not None and not cams:
            v.problem(cnode, "cameras", "needs at least one camera")
        for name, (knode, vnode) in (cams or {}).items():
            cpath = f"cameras.{name}"
            if not NAME_RE.match(name):
                v.problem(knode, cpath, "camera names may only use letters, digits, '_' and '-' "
                          "(they become MQTT topic levels and URL parts)")
            if isinstance(vnode, yaml.ScalarNode) and vnode.tag == "tag:yaml.org,2002:str":
                vals = v.fields(yaml.MappingNode("tag:yaml.org,2002:map", [
                    (yaml.ScalarNode("tag:yaml.org,2002:str", "url", knode.start_mark, knode.end_mark), vnode)
                ], vnode.start_mark, vnode.end_mark), cpath, CAMERA_FIELDS)  # "name: url" shorthand
            else:
                vals = v.fields(vnode, cpath, CAMERA_FIELDS, required=("url",), at=knode)
            if "url" in vals:
                cam = CameraConfig(name=name, **{**defaults, **vals})
                bad = source_problem(cam.url, must_exist=check_machine and cam.enabled)
                if bad:
                    v.problem(v.nodes.get(f"{cpath}.url"), f"{cpath}.url",
                              f"{bad} (got {redact_url(cam.url)!r})")
                cameras.append(cam)
        if cameras and not any(c.enabled for c in cameras):
            v.problem(cnode, "cameras", "every camera is disabled (enabled: false); enable one")
    web = WebConfig(**v.fields(top["web"][1], "web", WEB_FIELDS)) if "web" in top else WebConfig()

    def section(key: str, fields: dict[str, Check], required: str) -> dict[str, Any] | None:
        """An optional top-level section's checked values; None when absent or its required
        field is missing (reported)."""
        if key not in top:
            return None
        vals = v.fields(top[key][1], key, fields, required=(required,), at=top[key][0])
        return vals if required in vals else None

    mvals = section("mqtt", MQTT_FIELDS, "host")
    mqtt = MqttConfig(**mvals) if mvals is not None else None
    pvals = section("people", PEOPLE_FIELDS, "folder")
    people = PeopleConfig(**pvals) if pvals is not None else None
    if people is not None and check_machine and not Path(people.folder).is_dir():
        v.problem(v.nodes.get("people.folder"), "people.folder",
                  f"no such folder (got {people.folder!r}); make it with 'livefaces "
                  "people add NAME PHOTO... --people DIR'")
    det = _detector_options(v, dvals, [c for c in cameras if c.enabled],
                            engine_check if check_machine else None)
    if "web" in top and needs_token(web) and "web.token" not in v.nodes:
        # (a token given but invalid is reported already)
        v.problem(top["web"][1], "web.token", f"is required when web.host is {web.host!r} (not "
                  "loopback): set web.token (e.g. token: \"${LIVEFACES_TOKEN}\") or bind 127.0.0.1")
    if v.problems:
        raise ConfigError(v.problems)
    return ServeConfig(cameras=tuple(cameras), web=web, mqtt=mqtt, detector=det, source=filename,
                       people=people)


def _detector_options(v: _Validator, vals: dict[str, Any], cameras: list[CameraConfig],
                      engine_check: EngineCheck | None) -> DetectorOptions:
    """The shared engine's options from the ``detector:`` values; ``providers`` (the old key,
    ONNX Runtime's provider) stands for ``device`` with the ``onnx`` engine, as it always
    meant. ``engine_check``: why an engine or device asked for cannot run here (the check the
    engine makes at start, without loading a model), or None."""
    vals = dict(vals)
    key = "detector.device"
    providers = vals.pop("providers", None)
    if providers is not None:
        if "device" in vals:
            v.problem(v.nodes.get("detector.providers"), "detector.providers",
                      "is the old name of detector.device: give one of them")
        else:
            vals["device"] = providers
            vals.setdefault("engine", "onnx")
            key = "detector.providers"
    smallest = smallest_face(cameras)  # as ServeConfig will: the check below sees the real value
    if smallest is not None:
        vals["min_face_size"] = smallest
    try:
        det = DetectorOptions(**vals)
    except ValueError as e:  # InputError: the ranges above are narrower, so not expected
        v.problem(v.nodes.get("detector"), "detector", str(e))
        return DetectorOptions()
    problem = engine_check(det) if engine_check is not None else None
    if problem:
        bad = key if key in v.nodes else "detector.engine"
        v.problem(v.nodes.get(bad), bad, problem)
    return det
