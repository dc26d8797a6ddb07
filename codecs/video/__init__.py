"""Video codecs: implicit neural representations (NeRV, HNeRV) fitted to each clip."""
