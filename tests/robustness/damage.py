"""Ways of damaging a file in place, shared by the robustness tests."""


def truncate(path):
    """Keeps the first half of the file."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def flip_bytes(path):
    """Inverts 16 bytes in the middle of the file (same size)."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    with open(path, "wb") as f:
        f.write(bytes(data))


def zero_header(path):
    """Overwrites the first 512 bytes with zeros."""
    with open(path, "r+b") as f:
        f.write(b"\0" * 512)


def empty(path):
    """Leaves a zero-byte file."""
    open(path, "wb").close()
