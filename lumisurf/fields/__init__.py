"""Neural fields: SDF backends (registry ``SDF_BACKENDS``), variance, background NeRF, material fields.

Importing the package registers every SDF backend: a new backend is one module that decorates its class
with ``@SDF_BACKENDS.register(name)`` plus its import on the line below.
"""

from lumisurf.fields import sdf_hash, sdf_mlp  # noqa: F401  (register the SDF backends)
