"""The results store of an ``out=`` folder: records, saved codes, checkpoints, and what is done.

Layout of ``out/``::

    results.jsonl                         one JSON record per finished run, appended atomically
    codes/<config_hash>-<bits>-<seed>.npz     packed query/database codes and their labels
    codes/<config_hash>-<bits>-<seed>.json    its manifest (written last: its presence marks the codes complete)
    checkpoints/<config_hash>-<bits>-<seed>.pt  training state of a run in progress (deleted once recorded)
    scores/<config_hash>-<bits>-<seed>-<sha16>.npz  a record's per-query scores (named by their content's
                                          sha256, which the record holds: intervals and paired tests read them)
    logs/<method>_<bits>bits_seed<seed>_<hash8>/  TensorBoard event files of a run (train.log=tensorboard)
    logs/wandb/                           wandb's files (train.log=wandb)
    claims/<config_hash>-<bits>-<seed>.claim  held by the worker computing that run (hashbench.claims)
    claims/<config_hash>-<bits>-<seed>.failed the error of a run that failed, for the other workers
    claims/.records.claim                 held for the moment one record is appended
    sweeps/<run id>.json                  the runs a sweep planned (what hashbench status shows)
    .lock                                 held by a hashbench eval re-scoring into the folder

A run is identified by ``(method, dataset, bits, seed, config_hash)``. ``config_hash`` is the
sha256 (hex) of the canonical JSON (sorted keys, no spaces) of the parts of the resolved per-method
config that determine the *codes* (:func:`code_config`): for a deep method ``method``,
``backbone``, ``train`` (but not ``train.log``) and ``dataset``; for a classic method ``method``,
``dataset``, ``classic`` and ``backbone`` (``train`` does not touch it), or only ``method`` and
``dataset`` for a method that needs no features (``random``). Left out: code length and seed
(they are part of the run's key and file names), the ``eval`` section (it does not change codes:
a record stores its evaluation settings next to the hash, and a new evaluation re-scores saved
codes), ``device``, ``out`` and the package versions (recorded, not hashed: after changing the
code, pass ``force=true``). A backbone's ``input_size`` enters the hash as the size it resolves to,
and only where that differs from what the backbone took before the parameter existed (see
:func:`code_config`).

Two records with the same key and the same evaluation conventions (:data:`CONVENTION_KEYS`) are
merged metric by metric, later values winning (:func:`latest`): that is what tables and plots show.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import socket
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hashbench.atomic import atomic_append_line, atomic_write, atomic_write_text
from hashbench.errors import HashbenchError
from hashbench.settings import UNHASHED_TRAIN_KEYS

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger("hashbench.results")

RESULTS = "results.jsonl"
CONVENTION_KEYS = ("ties", "ap_denominator", "no_relevant")  # evaluation settings that change a metric's value
BIT_ORDER = "big"  # np.packbits' default: bit j of a code is bit 7 - j % 8 of byte j // 8
CODES_FORMAT = 1


# ------------------------------------------------------------------------------ config hash
def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, tuples as lists, anything else non-JSON as its ``str``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def method_kind(method_block: dict) -> tuple[bool, bool]:
    """(is a ClassicHasher, needs features) for a method block, looked up in the registry."""
    from hashbench.method import ClassicHasher, method_class
    from hashbench.registry import METHODS, lookup

    target = method_block.get("type")
    cls = method_class(lookup(METHODS, target) if isinstance(target, str) else target)
    if isinstance(cls, type) and issubclass(cls, ClassicHasher):
        return True, cls.needs_features
    return False, True


def code_config(mcfg: dict) -> dict:
    """The parts of a resolved per-method config (:func:`hashbench.config.method_config`) that
    determine the codes (see the module docstring)."""
    classic, needs_features = method_kind(mcfg["method"])
    if not classic:
        keys = ("method", "backbone", "train", "dataset")
    elif needs_features:
        keys = ("method", "dataset", "classic", "backbone")
    else:
        keys = ("method", "dataset")
    out = {k: mcfg.get(k) for k in keys}
    backbone = out.get("backbone")
    if isinstance(backbone, dict) and "type" in backbone:
        # The size the network takes, not the words that chose it (``auto`` and ``224`` can be the
        # same network), and only where it differs from what the backbone took before the
        # parameter existed: a timm backbone with weights, which took the stored images then and
        # takes its pretrained size now, gets a new hash instead of reusing those records.
        from hashbench.backbones import hashed_input_size

        size = hashed_input_size(backbone)
        out["backbone"] = {k: v for k, v in backbone.items() if k != "input_size"}
        if size is not None:
            out["backbone"]["input_size"] = size
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k not in UNHASHED_TRAIN_KEYS}
    return out


def flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train.lr": 0.001, ...}``: dotted keys, leaf values as they are."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def config_diff(old: dict, new: dict) -> list[str]:
    """``["method.type: 'dsrh' -> 'dsrh_nobypass'", "method.bypass: False -> (unset)", ...]``: the
    dotted keys whose values differ between two configs."""
    a, b = flat(old), flat(new)

    def shown(d, k):
        return repr(d[k]) if k in d else "(unset)"

    return [f"{k}: {shown(a, k)} -> {shown(b, k)}" for k in sorted(set(a) | set(b))
            if k not in a or k not in b or a[k] != b[k]]


def _before_input_size(mcfg: dict) -> dict:
    """A stored config from before ``backbone.input_size`` existed (no such key), with the size its
    backbone took then, so that it is not read as ``auto``: a timm model with weights took the stored
    images, while ``auto`` now means its pretrained size — another network, another hash."""
    backbone = mcfg.get("backbone")
    if not (isinstance(backbone, dict) and "type" in backbone) or "input_size" in backbone:
        return mcfg
    from hashbench.backbones import BACKBONES

    before = getattr(BACKBONES.get(backbone["type"]), "unhashed_input_size", None)
    return {**mcfg, "backbone": {**backbone, "input_size": "data" if before is None else before[0]}}


def config_hash(mcfg: dict) -> str:
    """sha256 hex digest of the canonical JSON of :func:`code_config`."""
    return hashlib.sha256(canonical_json(code_config(mcfg)).encode()).hexdigest()


def eval_settings(ev: dict) -> dict:
    """The evaluation settings a record stores: the conventions and the metric names."""
    out = {k: str(ev[k]) for k in CONVENTION_KEYS}
    out["metrics"] = [str(m) for m in ev["metrics"]]
    return out


def conventions_of(record: dict) -> tuple:
    """The evaluation conventions a record was scored under (older records: the config's eval)."""
    ev = record.get("eval") or (record.get("config") or {}).get("eval") or {}
    defaults = dict(ties="expected", ap_denominator="retrieved", no_relevant="zero")
    return tuple(str(ev.get(k, defaults[k])) for k in CONVENTION_KEYS)


def run_key(record: dict) -> tuple:
    """(method, dataset, bits, seed, config_hash) of a record."""
    return (record["method"], record["dataset"], int(record["bits"]), int(record["seed"]),
            record.get("config_hash"))


def stem(chash: str, bits: int, seed: int) -> str:
    return f"{chash}-{bits}-{seed}"


# ------------------------------------------------------------------------------ records
HEX64 = re.compile(r"[0-9a-f]{64}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_problem(rec) -> str | None:
    """Why ``rec`` is not a usable result record (``None`` when it is): the fields the store, the
    tables and the paths of saved codes rely on, with their types."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not a record"
    missing = [k for k in ("method", "dataset", "bits", "seed", "metrics") if k not in rec]
    if missing:
        return f"no {', '.join(missing)}"
    for key in ("method", "dataset"):
        if not isinstance(rec[key], str) or not rec[key]:
            return f"{key} {rec[key]!r} is not a name"
    for key in ("bits", "seed"):
        if not isinstance(rec[key], int) or isinstance(rec[key], bool) or rec[key] < 0:
            return f"{key} {rec[key]!r} is not a whole number >= 0"
    if not isinstance(rec["metrics"], dict):
        return f"metrics is a {type(rec['metrics']).__name__}, not a mapping of metric to value"
    bad = next((k for k, v in rec["metrics"].items() if not _number(v)), None)
    if bad is not None:
        return f"metric {bad} has the value {rec['metrics'][bad]!r}, not a number"
    chash = rec.get("config_hash")
    if chash is not None and not (isinstance(chash, str) and HEX64.fullmatch(chash)):
        return f"config_hash {chash!r} is not a sha256 hex digest"
    for key in ("config", "eval", "eval_info", "data"):
        if key in rec and rec[key] is not None and not isinstance(rec[key], dict):
            return f"{key} is a {type(rec[key]).__name__}, not a mapping"
    return None


def read_records(path: Path) -> list[dict]:
    """Every record of a ``results.jsonl``; an unreadable line (a crash while writing) or a
    damaged record (:func:`record_problem`) is skipped with a warning naming its line number."""
    if path.is_dir():
        raise HashbenchError(f"{path} is a folder, not a results file; move it away or choose another out=")
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise HashbenchError(f"cannot read {path}: {e.strerror or e}") from None
    records = []
    lines = data.split(b"\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            where = "truncated last line" if i == len(lines) else f"unreadable line {i}"
            log.warning(f"{path}: ignoring a {where} ({len(line)} bytes; left by an interrupted write?)")
            continue
        problem = record_problem(rec)
        if problem:
            log.warning(f"{path}: ignoring line {i}, a damaged record: {problem}")
            continue
        records.append(rec)
    return records


def data_of(record: dict) -> str | None:
    """The data fingerprint a record was made on (``None`` for records older than fingerprints)."""
    data = record.get("data")
    return data.get("sha256") if isinstance(data, dict) else None


def data_change(old: dict | None, new: dict) -> str:
    """``"train 24 -> 23, query 8 -> 7"`` or ``"train: other items or labels"``: how the data under
    a stored record (``old``, its ``data`` field) differs from ``new`` (a dataset fingerprint)."""
    before = (old or {}).get("splits") or {}
    parts = []
    for split, now in new["splits"].items():
        was = before.get(split)
        if not isinstance(was, dict):
            parts.append(f"{split}: not recorded")
        elif was.get("n") != now["n"]:
            parts.append(f"{split} {was.get('n')} -> {now['n']} items")
        elif was.get("sha256") != now["sha256"]:
            parts.append(f"{split}: other items, labels or inputs")
    return ", ".join(parts) or "other data"


# ------------------------------------------------------------------------------ merging
def latest(records: Iterable[dict]) -> list[dict]:
    """One record per (run key, evaluation conventions), metrics merged in file order (later wins).

    The merged record is the latest one of its group with ``metrics`` replaced by the union; the
    groups keep the order in which they first appear. A record made on other data than the group
    so far (:func:`data_of` differs) replaces it: metrics of different data are never merged.
    """
    groups: dict[tuple, dict] = {}
    for rec in records:
        key = run_key(rec) + conventions_of(rec)
        prev = groups.get(key)
        same_data = prev is None or data_of(prev) is None or data_of(rec) is None or data_of(prev) == data_of(rec)
        before = prev["metrics"] if prev is not None and same_data else {}
        refs = prev.get("_per_query", {}) if prev is not None and same_data else {}
        # which file holds each merged metric's per-query scores (none for a record without them)
        mine = {m: rec["per_query"] for m in rec["metrics"]} if isinstance(rec.get("per_query"), dict) else {}
        refs = {**{m: r for m, r in refs.items() if m not in rec["metrics"]}, **mine}
        groups[key] = {**rec, "metrics": {**before, **rec["metrics"]}, "_per_query": refs}
    return list(groups.values())


# ------------------------------------------------------------------------------ the folder
def check_out_folder(out: str | Path, word: str = "out") -> Path:
    """``out`` as a folder hashbench can write (it need not exist yet): one line saying why not
    when it names a file, lies under a file, or cannot be written. Creates nothing."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise HashbenchError(f"{word}={out} is a file, not a folder; choose a folder ({word}=DIR)")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise HashbenchError(f"{word}={out} lies under {probe}, which is a file, not a folder; choose a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise HashbenchError(f"{word}={out} cannot be written ({probe}: {e.strerror or e}); choose a folder you "
                             "can write to") from None
    return path


# ------------------------------------------------------------------------------ the store
class ResultStore:
    """An ``out=`` folder: ``results.jsonl``, saved codes with manifests, training checkpoints."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = self.out / RESULTS
        self.codes_dir = self.out / "codes"
        self.checkpoint_dir = self.out / "checkpoints"
        self.scores_dir = self.out / "scores"

    @contextmanager
    def lock(self):
        """Hold ``out/.lock`` while ``hashbench eval`` re-scores: a second eval into the same folder
        stops at once with a one-line error instead of scoring the same codes twice. (Sweeps do not
        take it: their workers share a folder through claims, :mod:`hashbench.claims`. An advisory
        ``flock``: released when the process ends, however it ends; on a network file system it may
        not be seen across machines.)"""
        if fcntl is None:  # not POSIX: no lock
            yield
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise HashbenchError(f"out={self.out} is in use by {holder}: wait for it to finish, or "
                                     "choose another out=") from None
            f.seek(0)
            f.truncate()
            f.write(f"hashbench pid {os.getpid()} on {socket.gethostname()}")
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # records ---------------------------------------------------------------------------------
    def records(self) -> list[dict]:
        """Every readable record; one written before config hashes existed gets the hash of its
        stored config (exact for deep methods, whose stored config holds every hashed part)."""
        records = read_records(self.path)
        for rec in records:
            if rec.get("config_hash") is None and isinstance(rec.get("config"), dict):
                try:
                    rec["config_hash"] = config_hash(_before_input_size(rec["config"]))
                except Exception:  # an unregistered plugin method, a malformed config: leave it unhashed
                    pass
        return records

    def append(self, record: dict) -> None:
        """One record, appended under the folder's short records lock: several workers (on several
        machines of a shared file system, where appends are not atomic) never interleave."""
        from hashbench.claims import ShortLock

        with ShortLock(self.out):
            atomic_append_line(self.path, record)

    def done(self, records: list[dict] | None = None) -> dict[tuple, dict]:
        """(run key + conventions) → merged record, for the skip logic."""
        merged = latest(self.records() if records is None else records)
        return {run_key(r) + conventions_of(r): r for r in merged}

    # sweeps -----------------------------------------------------------------------------------
    def save_plan(self, run_id: str, runs: list[dict], force: bool = False, data: str | None = None) -> None:
        """The runs a sweep set out to compute (every worker of it writes the same file; a worker,
        having read the data, adds its fingerprint ``data``)."""
        if not re.fullmatch(r"[0-9A-Za-z_.-]+", run_id):
            raise HashbenchError(f"run id {run_id!r} cannot name a file")
        plan = dict(run_id=run_id, runs=runs, force=force, **({"data": data} if data else {}))
        atomic_write_text(self.out / "sweeps" / f"{run_id}.json", json.dumps(plan, sort_keys=True) + "\n")

    def plans(self) -> list[dict]:
        """Every sweep's plan, oldest first; unreadable ones skipped with a warning."""
        out = []
        for path in sorted((self.out / "sweeps").glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                plan = json.loads(path.read_text())
                assert isinstance(plan.get("runs"), list)
            except (OSError, ValueError, AssertionError, AttributeError):
                log.warning(f"{path}: not a sweep plan, ignored")
                continue
            out.append(plan)
        return out

    # codes ----------------------------------------------------------------------------------
    def _stem(self, chash: str, bits: int, seed: int) -> str:
        # The stem names files under out/: only a sha256 digest and two numbers may make it, so a
        # record cannot point outside the folder.
        if not (isinstance(chash, str) and HEX64.fullmatch(chash)):
            raise HashbenchError(f"config_hash {chash!r} is not a sha256 hex digest; refusing to read or write "
                                 f"codes for it under {self.out}")
        return stem(chash, int(bits), int(seed))

    def codes_path(self, chash: str, bits: int, seed: int) -> Path:
        return self.codes_dir / f"{self._stem(chash, bits, seed)}.npz"

    def manifest_path(self, chash: str, bits: int, seed: int) -> Path:
        return self.codes_dir / f"{self._stem(chash, bits, seed)}.json"

    def checkpoint_path(self, chash: str, bits: int, seed: int) -> Path:
        return self.checkpoint_dir / f"{self._stem(chash, bits, seed)}.pt"

    def has_codes(self, chash: str, bits: int, seed: int) -> bool:
        return self.manifest_path(chash, bits, seed).exists() and self.codes_path(chash, bits, seed).exists()

    def save_codes(self, info: dict, query, database, query_labels, database_labels) -> dict:
        """Write the packed codes of one run and then its manifest, each atomically.

        ``query`` (nq, bits) and ``database`` (N, bits): codes in {0, 1}; labels (n, C) multi-hot.
        ``info`` holds the record fields to keep (method, dataset, bits, seed, config_hash, ...).
        Returns the manifest.
        """
        q, d = (np.asarray(c).astype(bool) for c in (query, database))
        bits, seed, chash = int(info["bits"]), int(info["seed"]), info["config_hash"]
        if q.ndim != 2 or d.ndim != 2 or q.shape[1] != bits or d.shape[1] != bits:
            raise HashbenchError(f"codes of shapes {q.shape} and {d.shape} do not have {bits} bits")
        ql, dl = np.asarray(query_labels), np.asarray(database_labels)
        path = self.codes_path(chash, bits, seed)
        buf = io.BytesIO()
        np.savez_compressed(buf, query=np.packbits(q, axis=1), database=np.packbits(d, axis=1),
                            query_labels=ql, database_labels=dl)
        data = buf.getvalue()
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        manifest = dict(
            format=CODES_FORMAT, file=path.name, **{**info, "bits": bits, "seed": seed}, bit_order=BIT_ORDER,
            packing="np.packbits(codes, axis=1)",
            shapes=dict(query=list(q.shape), database=list(d.shape), query_labels=list(ql.shape),
                        database_labels=list(dl.shape)),
            label_dtype=str(ql.dtype), sha256=hashlib.sha256(data).hexdigest())
        atomic_write_text(self.manifest_path(chash, bits, seed), json.dumps(manifest, indent=1) + "\n")
        return manifest

    def load_manifest(self, chash: str, bits: int, seed: int) -> dict:
        """The manifest of saved codes, checked to belong to this run; :class:`DamagedCodes` when it
        cannot be read or names another run."""
        path = self.manifest_path(chash, bits, seed)
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DamagedCodes(f"{path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
        if not isinstance(manifest, dict):
            raise DamagedCodes(f"{path} is not a codes manifest (a JSON {type(manifest).__name__})")
        for key, want in (("config_hash", chash), ("bits", int(bits)), ("seed", int(seed))):
            if manifest.get(key) != want:
                raise DamagedCodes(f"{path} is the manifest of another run ({key} {manifest.get(key)!r}, "
                                   f"expected {want!r}): copied over?")
        if not isinstance(manifest.get("sha256"), str) or not isinstance(manifest.get("shapes"), dict):
            raise DamagedCodes(f"{path} has no sha256 or shapes of its codes")
        return manifest

    def load_codes(self, chash: str, bits: int, seed: int) -> dict[str, np.ndarray]:
        """``query``, ``database`` (uint8 in {0, 1}, shape (n, bits)), ``query_labels``, ``database_labels``.

        The file must have the sha256 its manifest records (a copied-over or damaged file is
        refused, :class:`DamagedCodes`, naming it) and the shapes it records.
        """
        if not self.has_codes(chash, bits, seed):
            raise HashbenchError(f"no saved codes for {stem(chash, bits, seed)} in {self.codes_dir}")
        manifest = self.load_manifest(chash, bits, seed)
        path = self.codes_path(chash, bits, seed)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DamagedCodes(f"{path} cannot be read: {e.strerror or e}") from None
        if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
            raise DamagedCodes(f"{path} does not have the sha256 its manifest {path.with_suffix('.json').name} "
                               "records (copied over from another run, or damaged): refused")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                out = {k: z[k] for k in ("query", "database", "query_labels", "database_labels")}
            for k in ("query", "database"):
                out[k] = np.unpackbits(out[k], axis=1, count=int(bits),
                                       bitorder=manifest.get("bit_order", BIT_ORDER))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise DamagedCodes(f"{path} cannot be read as saved codes ({type(e).__name__})") from None
        for k in ("query", "database", "query_labels", "database_labels"):
            if list(out[k].shape) != manifest["shapes"].get(k):
                raise DamagedCodes(f"{path}: {k} has shape {list(out[k].shape)}, the manifest says "
                                   f"{manifest['shapes'].get(k)}")
        return out


    # per-query scores -------------------------------------------------------------------------
    def save_scores(self, chash: str, bits: int, seed: int, per_query: dict, kept) -> dict:
        """Write one scoring's per-query values (``per_query``: metric -> (nq,) array; ``kept``: the
        queries its means are over) and return the reference a record stores: ``{"file", "sha256"}``.
        The file is named by its content, so a later scoring never overwrites what a record points to."""
        names = list(per_query)
        values = np.stack([np.asarray(per_query[m], dtype=np.float64) for m in names], axis=1)
        buf = io.BytesIO()
        np.savez_compressed(buf, metrics=np.array(names, dtype=str), values=values,
                            kept=np.asarray(kept, dtype=bool))
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        path = self.scores_dir / f"{self._stem(chash, bits, seed)}-{digest[:16]}.npz"
        if not path.exists():
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        return {"file": f"scores/{path.name}", "sha256": digest}

    def load_scores(self, ref: dict) -> dict[str, np.ndarray]:
        """metric -> the per-query scores of the queries in the means, from a record's reference;
        :class:`DamagedCodes` when the file is missing, damaged or not the one the record names."""
        name = str((ref or {}).get("file", ""))
        if not re.fullmatch(r"scores/[0-9a-f]{64}-\d+-\d+-[0-9a-f]{16}\.npz", name):
            raise DamagedCodes(f"per-query scores reference {name!r} does not name a file under {self.scores_dir}")
        path = self.out / name
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DamagedCodes(f"{path} cannot be read: {e.strerror or e}") from None
        if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
            raise DamagedCodes(f"{path} does not have the sha256 its record holds (damaged or replaced): refused")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                names, values, kept = list(z["metrics"]), z["values"], z["kept"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise DamagedCodes(f"{path} cannot be read as per-query scores ({type(e).__name__})") from None
        return {str(m): values[kept, i] for i, m in enumerate(names)}


class DamagedCodes(HashbenchError):
    """Saved codes or their manifest that cannot be trusted (unreadable, or not what the manifest
    records): the caller leaves the run out or computes it again."""
