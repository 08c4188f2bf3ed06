"""Neural fields: SDF backends (registry ``SDF_BACKENDS``), variance, background NeRF."""
