"""Reading the World Bank's reference files: RPW's quotes (``corridors.reading.rpw``) and the
bilateral remittance matrix (``corridors.reading.matrix``).

Pure reading, no database and no network: every stage may use it (``collector`` imports a
file into the store, ``publish`` reads the bundled files for its bulletin and weights,
``sendcost indicators --from-file`` computes from a file directly). Collecting (fetching a
file, storing what was read) stays in ``collector``.
"""
