"""coffea processors of coffea_ad: thin glue that calls the physics in :mod:`coffea_ad.features`."""
