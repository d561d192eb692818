"""Certificate Transparency log core (RFC 6962 / RFC 9162, C2SP checkpoints and tiles).

Everything here is sans-I/O: time, keys and storage are passed in, so every replica that executes the
same ordered submissions builds the same tree, byte for byte. The file-backed leaf store is a driver
concern and lives in `reference_node.ct_filestore`.
"""
