"""JSON and UBJSON documents checked before a native parser sees them.

Native model loaders parse by recursion and trust the sizes a file declares: a
document nested 100,000 deep overflows the loading thread's stack, a UBJSON array
claiming a billion items makes the parser allocate them all, a string claiming more
bytes than the file holds is read past its end. Each kills the whole process, not
one load. These parsers accept only what such a loader can take safely and hand the
document back, so a model's own invariants can be checked next
(:mod:`modelyard.handlers.xgboost_checks`):

* nesting at most :data:`MAX_DEPTH` levels (real models nest fewer than 10);
* UBJSON: known markers, lengths and counts that fit in the bytes after them;
* JSON: balanced brackets and terminated strings;
* keys unique in each object.

Both are linear in the file and cheap next to the load they guard: the number
arrays that are nearly all of a model are never turned into Python objects
(:class:`NumberArray` handles, decoded on demand), JSON's shape is found with NumPy
in one pass (:mod:`.jsontext`), UBJSON's typed arrays are skipped in one jump
(:mod:`.ubjson`) and its arrays of like objects, a model's trees, are read by column
(:mod:`.ubjtable`). Pure functions of the bytes: no I/O, no native parser.
"""

from modelyard.handlers.structure.jsontext import parse_json
from modelyard.handlers.structure.ubjson import parse_ubjson
from modelyard.handlers.structure.ubjtable import Column, Table
from modelyard.handlers.structure.values import MAX_DEPTH, NumberArray, StructureError, stack_integers

__all__ = [
    "MAX_DEPTH",
    "Column",
    "NumberArray",
    "StructureError",
    "Table",
    "parse_json",
    "parse_ubjson",
    "stack_integers",
]
