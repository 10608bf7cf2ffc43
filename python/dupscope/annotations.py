"""Annotation files -> an ordered table of images (path, label, split).

Supported inputs, detected from the file's extension and, when that is ambiguous, its content:

- **COCO JSON**: ``images`` (``id``, ``file_name``, optional ``width``/``height``/``category_id``/
  ``split``), ``categories`` (``id``, ``name``) and optional ``annotations`` (``image_id``,
  ``category_id``). An image's label is its own ``category_id`` when it has one; otherwise the
  category that occurs most often among its annotations (ties go to the category whose first
  annotation comes first in the file); otherwise ``""``.
- **CSV / TSV**: a header row with a path column (``file_name``, ``path``, ``filename``,
  ``image``, ...) and optional label and split columns. The delimiter is tab for ``.tsv``; for
  other files it is whichever of tab, comma, semicolon and pipe occurs most in the header.
- **JSON Lines** (``.jsonl``/``.ndjson``, or a JSON file holding a list of objects): one object per
  image with the same keys as the CSV columns.
- **plain text list**: one path per line; blank lines and lines starting with ``#`` are skipped.
- **WebDataset tar shards and Parquet files**: a ``.tar`` or ``.parquet`` file or a brace
  pattern of them (``shards/{00000..00099}.tar``), images read in place (:mod:`dupscope.shards`).
- **a folder**: every image file below it (recursively, hidden files and folders skipped) in sorted
  path order. An image's label is the name of its parent folder (``""`` directly in the root) and
  its split is ``train``/``val``/``test`` when a folder on its path has such a name (the usual
  ``train/cat/x.jpg`` layout).

Rows keep the order of the file, also for rows with an empty path (they become images that fail
to load, so that row ``i`` of the results is always line ``i`` of the annotations). Relative paths
resolve against ``image_root`` when given, else against the annotation file's folder. Split names
are normalised (``training`` -> ``train``, ``valid``/``validation``/``dev`` -> ``val``,
``testing`` -> ``test``); other values are kept as written.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AnnotationError
from .images import IMAGE_EXTENSIONS

__all__ = ["AnnotationError", "ImageTable", "load_annotations", "PATH_COLUMNS", "LABEL_COLUMNS", "SPLIT_COLUMNS"]

#: Column/key names recognised as the image path, label and split (case-insensitive).
PATH_COLUMNS = ("file_name", "path", "filename", "image", "image_path", "filepath", "file_path", "file", "img")
LABEL_COLUMNS = ("label", "class", "category", "class_name", "category_name", "label_name")
SPLIT_COLUMNS = ("split", "subset", "set", "fold")

_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
# Magic numbers of common image formats: someone passing an image instead of its annotation file
# gets told so instead of a JSON or CSV parse error.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


@dataclass
class ImageTable:
    """Images listed by an annotation file, in the file's order.

    Attributes
    ----------
    paths : list of str
        Paths as written in the file (relative to the folder for folder input).
    resolved : list of str
        Absolute paths the images are read from.
    labels : list of str
        Label name per image, ``""`` when none.
    splits : list of str
        Split per image (``train``/``val``/``test``/other), ``""`` when none.
    categories : dict of int to str
        COCO category id -> name (empty for other formats).
    source : str
        Absolute path of the annotation file or folder.
    format : str
        ``"coco"``, ``"csv"``, ``"jsonl"``, ``"list"``, ``"folder"``, ``"webdataset"`` or ``"parquet"``.
    """

    paths: list[str]
    resolved: list[str]
    labels: list[str]
    splits: list[str]
    categories: dict[int, str] = field(default_factory=dict)
    source: str = ""
    format: str = ""

    def __len__(self) -> int:
        return len(self.paths)


def _normalise_split(value) -> str:
    if value is None:
        return ""
    text = str(value).strip()
    return _SPLIT_ALIASES.get(text.lower(), text)


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _resolve(paths: list[str], base: Path) -> list[str]:
    out = []
    for p in paths:
        if p == "":
            out.append("")  # keeps the row; the image loader reports "no path given"
            continue
        q = Path(os.path.expanduser(p))
        out.append(os.path.normpath(q if q.is_absolute() else base / q))
    return out


def _pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str,
                 src: str, required: bool, option: str) -> str | None:
    """Choose a column by explicit name, else by the known names."""
    if wanted is not None:
        if wanted in columns:
            return wanted
        lowered = {c.lower(): c for c in columns}
        if wanted.lower() in lowered:
            return lowered[wanted.lower()]
        raise AnnotationError(f"{src}: no {what} column {wanted!r}; the columns are {', '.join(map(repr, columns))}")
    matches = [c for c in columns if c.strip().lower() in candidates]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        if what != "path":
            # Labels/splits: the first known name in priority order wins.
            return min(matches, key=lambda c: candidates.index(c.strip().lower()))
        raise AnnotationError(
            f"{src}: several columns could hold the image path ({', '.join(map(repr, matches))}); "
            f"choose one with {option}"
        )
    if required:
        raise AnnotationError(
            f"{src}: no image path column found; the columns are {', '.join(map(repr, columns))}. "
            f"Name it one of {', '.join(candidates)} or choose it with {option}"
        )
    return None


def _records_to_table(records: list[dict], src: str, fmt: str, base: Path, path_column, label_column,
                      split_column) -> ImageTable:
    columns: list[str] = []
    seen = set()
    for rec in records:
        for key in rec:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    pcol = _pick_column(columns, path_column, PATH_COLUMNS, "path", src, True, "path_column (--path-column)")
    lcol = _pick_column(columns, label_column, LABEL_COLUMNS, "label", src, False, "--label-column")
    scol = _pick_column(columns, split_column, SPLIT_COLUMNS, "split", src, False, "--split-column")
    paths = [_text(r.get(pcol)) for r in records]
    labels = [_text(r.get(lcol)) if lcol else "" for r in records]
    splits = [_normalise_split(r.get(scol)) if scol else "" for r in records]
    return ImageTable(paths, _resolve(paths, base), labels, splits, {}, src, fmt)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read the annotation file ({exc.strerror or exc})") from None
    head = raw[:16]
    if any(head.startswith(m) for m in _IMAGE_MAGIC):
        raise AnnotationError(f"{path}: this is an image, not an annotation file; pass the annotation file or the folder")
    if b"\x00" in raw[:8192]:
        raise AnnotationError(f"{path}: binary data, not an annotation file (COCO JSON, CSV, JSON Lines or a list of paths)")
    # UTF-8, with any byte that is not valid UTF-8 kept as a surrogate escape (os.fsdecode's
    # convention): a name written in another encoding then still names the same bytes on disk,
    # and the valid UTF-8 names of the same file (cafe with an accent) stay what they are.
    return raw.decode("utf-8-sig", errors="surrogateescape")


def _scalar_id(value) -> bool:
    """Whether a COCO id is usable as a key: a number or a string (not a list, an object or null)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _load_coco(doc: dict, src: str, base: Path, label_column, split_column) -> ImageTable:
    images = doc.get("images")
    if not isinstance(images, list):
        raise AnnotationError(f"{src}: JSON without an 'images' list; expected COCO (images, categories, annotations)")
    categories: dict[int, str] = {}
    for cat in doc.get("categories") or []:
        if isinstance(cat, dict) and "id" in cat:
            try:
                categories[int(cat["id"])] = _text(cat.get("name", cat["id"]))
            except (TypeError, ValueError):
                continue

    # Most frequent annotated category per image; Counter keeps first-seen order for ties. Ids
    # that are not plain numbers or strings (a list, an object) match nothing.
    per_image: dict = {}
    for ann in doc.get("annotations") or []:
        if isinstance(ann, dict) and _scalar_id(ann.get("image_id")) and _scalar_id(ann.get("category_id")):
            per_image.setdefault(ann["image_id"], Counter())[ann["category_id"]] += 1

    def category_name(cid) -> str:
        try:
            return categories.get(int(cid), str(cid))
        except (TypeError, ValueError):
            return _text(cid)

    paths, labels, splits = [], [], []
    for img in images:
        if not isinstance(img, dict):
            img = {}
        path = img.get("file_name")
        if path is None:
            path = next((img[k] for k in PATH_COLUMNS if k in img), "")
        paths.append(_text(path))
        if label_column is not None:
            labels.append(_text(img.get(label_column)))
        elif _scalar_id(img.get("category_id")):
            labels.append(category_name(img["category_id"]))
        elif _scalar_id(img.get("id")) and img["id"] in per_image:
            labels.append(category_name(per_image[img["id"]].most_common(1)[0][0]))
        elif isinstance(img.get("label"), str):
            labels.append(img["label"].strip())
        else:
            labels.append("")
        splits.append(_normalise_split(img.get(split_column or "split")))
    return ImageTable(paths, _resolve(paths, base), labels, splits, categories, src, "coco")


def _load_jsonl(text: str, src: str, base: Path, **cols) -> ImageTable:
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{src}: line {lineno} is not valid JSON ({exc.msg})") from None
        if isinstance(rec, str):
            rec = {"path": rec}
        if not isinstance(rec, dict):
            raise AnnotationError(f"{src}: line {lineno} is not a JSON object")
        records.append(rec)
    if not records:
        raise AnnotationError(f"{src}: lists no images")
    return _records_to_table(records, src, "jsonl", base, **cols)


def _load_json(text: str, src: str, base: Path, path_column, label_column, split_column) -> ImageTable:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        # Several objects, one per line, in a .json file: JSON Lines after all.
        if text.lstrip().startswith("{") and "\n" in text.strip():
            return _load_jsonl(text, src, base, path_column=path_column, label_column=label_column,
                               split_column=split_column)
        raise AnnotationError(f"{src}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(doc, dict):
        if "images" not in doc:
            raise AnnotationError(f"{src}: JSON without an 'images' list; expected COCO (images, categories, annotations)")
        return _load_coco(doc, src, base, label_column, split_column)
    if isinstance(doc, list):
        records = [{"path": r} if isinstance(r, str) else r for r in doc]
        if not all(isinstance(r, dict) for r in records):
            raise AnnotationError(f"{src}: a JSON list must hold objects or path strings")
        if not records:
            raise AnnotationError(f"{src}: lists no images")
        table = _records_to_table(records, src, "jsonl", base, path_column, label_column, split_column)
        return table
    raise AnnotationError(f"{src}: JSON {type(doc).__name__} is not an annotation file")


def _load_csv(text: str, src: str, base: Path, delimiter: str | None, **cols) -> ImageTable:
    lines = text.splitlines()
    header = next((ln for ln in lines if ln.strip()), "")
    if delimiter is None:
        counts = {d: header.count(d) for d in ("\t", ",", ";", "|")}
        delimiter = max(counts, key=counts.get) if max(counts.values()) > 0 else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    rows = []
    start = 1
    try:
        if not reader.fieldnames:
            raise AnnotationError(f"{src}: lists no images (empty file)")
        start = reader.line_num + 1
        for row in reader:
            if reader.line_num > start:
                # A quote opened a field that ran on over the following lines: the rows in
                # between would silently become one field.
                raise AnnotationError(
                    f"{src}: line {start}: a quote opens a field that runs on to line {reader.line_num}; "
                    "close the quote or remove it (a field holding a quote character must be quoted "
                    'and the quote doubled: "a""b.jpg")')
            start = reader.line_num + 1
            if any((v or "").strip() for v in row.values() if isinstance(v, str)):
                rows.append(row)
    except csv.Error as exc:
        raise AnnotationError(f"{src}: line {start}: {exc} (a field of over 128 KB is not an image path)") from None
    if not rows:
        raise AnnotationError(f"{src}: lists no images (only a header row)")
    # DictReader puts surplus fields under None; drop them so they do not count as a column.
    rows = [{k.strip(): v for k, v in row.items() if k is not None} for row in rows]
    return _records_to_table(rows, src, "csv", base, **cols)


def _load_list(text: str, src: str, base: Path) -> ImageTable:
    paths = [ln.strip() for ln in text.splitlines()]
    paths = [p for p in paths if p and not p.startswith("#")]
    if not paths:
        raise AnnotationError(f"{src}: lists no images")
    n = len(paths)
    return ImageTable(paths, _resolve(paths, base), [""] * n, [""] * n, {}, src, "list")


#: File that marks a folder written by ``dupscope visualize`` (or ``run``/``demo``); a folder scan
#: never takes that folder's own ``thumbs/`` and ``assets/`` as input images.
EXPLORER_MARKER = ".dupscope-explorer"
EXPLORER_OUTPUTS = ("thumbs", "assets")


def _load_folder(root: Path) -> ImageTable:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if EXPLORER_MARKER in filenames:  # our own thumbnails are not images of the data set
            dirnames[:] = [d for d in dirnames if d not in EXPLORER_OUTPUTS]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    found.sort()
    if not found:
        raise AnnotationError(f"{root}: the folder holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    labels, splits = [], []
    for rel in found:
        parts = rel.split("/")[:-1]
        labels.append(parts[-1] if parts else "")
        split = next((_SPLIT_ALIASES[p.lower()] for p in parts if p.lower() in _SPLIT_ALIASES), "")
        splits.append(split)
    resolved = [os.path.normpath(root / p) for p in found]
    return ImageTable(found, resolved, labels, splits, {}, str(root), "folder")


def load_annotations(
    path: str | os.PathLike,
    *,
    image_root: str | os.PathLike | None = None,
    path_column: str | None = None,
    label_column: str | None = None,
    split_column: str | None = None,
) -> ImageTable:
    """Read an annotation file (or folder) into an ordered :class:`ImageTable`.

    Parameters
    ----------
    path : str or path-like
        COCO JSON, CSV/TSV, JSON Lines, a text list of paths, or a folder of images.
    image_root : str or path-like, optional
        Folder that relative image paths are relative to (default: the annotation file's folder;
        for folder input the folder itself).
    path_column, label_column, split_column : str, optional
        Column (or JSON key) names to use instead of the recognised ones (:data:`PATH_COLUMNS`,
        :data:`LABEL_COLUMNS`, :data:`SPLIT_COLUMNS`). For COCO, ``label_column`` and
        ``split_column`` name keys of the ``images`` entries.

    Returns
    -------
    ImageTable

    Raises
    ------
    AnnotationError
        When the file does not exist, is not an annotation file, has no usable path column, or
        lists no images. Problems with single images (missing files, empty paths) are not errors
        here: they are reported when the images are loaded.
    """
    from .shards import is_shard_spec, load_shards

    if is_shard_spec(os.path.expanduser(os.fspath(path))):
        return load_shards(path, path_column=path_column, label_column=label_column, split_column=split_column)
    p = Path(os.path.expanduser(os.fspath(path))).absolute()
    src = str(p)
    cols = dict(path_column=path_column, label_column=label_column, split_column=split_column)
    if p.is_dir():
        table = _load_folder(p)
        if image_root is not None:
            table.resolved = _resolve(table.paths, Path(image_root).absolute())
        return table
    if not p.exists():
        raise AnnotationError(f"{src}: no such annotation file or folder")
    base = Path(os.path.expanduser(os.fspath(image_root))).absolute() if image_root is not None else p.parent
    text = _read_text(p)
    if not text.strip():
        raise AnnotationError(f"{src}: the file is empty and lists no images")
    ext = p.suffix.lower()
    if ext == ".json":
        table = _load_json(text, src, base, **cols)
    elif ext in (".jsonl", ".ndjson"):
        table = _load_jsonl(text, src, base, **cols)
    elif ext == ".tsv":
        table = _load_csv(text, src, base, "\t", **cols)
    elif ext == ".csv":
        table = _load_csv(text, src, base, None, **cols)
    else:
        stripped = text.lstrip()
        if stripped.startswith("{") or stripped.startswith("["):
            table = _load_json(text, src, base, **cols)
        elif path_column is not None or _looks_like_csv(text):
            table = _load_csv(text, src, base, None, **cols)
        else:
            table = _load_list(text, src, base)
    if len(table) == 0:
        raise AnnotationError(f"{src}: lists no images")
    return table


def _looks_like_csv(text: str) -> bool:
    """A text file whose first line is a header naming a path column is a table, not a path list."""
    header = next((ln for ln in text.splitlines() if ln.strip()), "")
    for delim in ("\t", ",", ";", "|"):
        if delim in header:
            cells = [c.strip().strip('"').lower() for c in header.split(delim)]
            if any(c in PATH_COLUMNS for c in cells):
                return True
    return False
