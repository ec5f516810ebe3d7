"""Step 2 of a task's life, **key**: what a task's result is stored under.

- :mod:`~ndustria.keys.hashing` hashes argument values by content (``ValueHasher``), with
  :mod:`~ndustria.keys.arrays` for numpy and pandas (registered once they are imported);
- :mod:`~ndustria.keys.library` tells library code from user code, and names its version;
- :mod:`~ndustria.keys.code` reads a code object: its normalized source or bytecode, what it loads;
- :mod:`~ndustria.keys.reads` records what a digest read, so a remembered digest is reused only
  while every read finds the same object;
- :mod:`~ndustria.keys.fingerprint` digests a function with everything it reaches (``Fingerprinter``);
- :mod:`~ndustria.keys.files` makes ``File(path)`` arguments count by content;
- :mod:`~ndustria.keys.maker` combines them into task ids and result keys (``KeyMaker``, ``result_key``).

May import: :mod:`ndustria.task`, :mod:`ndustria.records`, :mod:`ndustria.errors`, :mod:`ndustria.config`.
Never the store, the catalog, the runner or the views.
"""

from ndustria.keys import arrays  # noqa: F401 - registers the numpy and pandas handlers
from ndustria.keys.files import File
from ndustria.keys.fingerprint import Fingerprinter
from ndustria.keys.hashing import ValueHasher
from ndustria.keys.maker import KeyMaker, result_key

__all__ = ["File", "Fingerprinter", "KeyMaker", "ValueHasher", "result_key"]
