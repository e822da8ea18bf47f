"""One module per contender of ``bench.sdk``: each drives its library the way that library's docs show."""
