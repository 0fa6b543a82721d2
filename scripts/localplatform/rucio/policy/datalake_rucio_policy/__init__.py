"""The local platform's Rucio policy package: Rucio's generic policy plus user uploads on RSEs marked for them.

Loaded by the local Rucio server (``[policy] package = datalake_rucio_policy``, this directory on its
``PYTHONPATH``). Why a package: Rucio's generic permission policy (and ESCAPE's, 0.2.2) lets only
root and admins set replica states, so a plain ``rucio upload`` by a user registers the file, writes
it to the storage and then fails at the last step. A site that lets users upload says which RSEs
they may upload to; here that is the RSE attribute ``user_upload`` (set on ``LOCAL_USERDISK``).
"""

SUPPORTED_VERSION = [">=41,<42"]
