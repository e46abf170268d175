"""Files the engine must be able to trust after a crash, a damaged disk or a hostile
neighbour: authenticated record framing (``framing``), the key it is authenticated with
(``keys``), and private directories (``private_dir``). The checkpoint files and the
write-ahead logs are built on these."""
