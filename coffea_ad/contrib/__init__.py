"""Protocols built on coffea_ad that are not part of an analysis: benchmarks' and examples' shared code.

- :mod:`~coffea_ad.contrib.lhco`: the LHC Olympics R&D protocol of the CATHODE study on generated samples.
"""
