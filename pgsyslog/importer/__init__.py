"""Reading log files into the store: `pgsyslog import` and `pgsyslog import --follow`.

``source`` opens a file (plain or gzip, told by its magic bytes) and reads it as lines
with byte offsets of the decompressed content; ``identity`` recognises a file imported
before (device/inode, SHA-256 of its first bytes), renamed or compressed since;
``lines`` turns lines into records (pure); ``ledger`` keeps syslog.imported_files;
``run`` writes batches with the same binary COPY as serve, each batch committed with the
file's new position; ``follow`` reads on as files grow and rotate, as ``tail -F``.
"""
