"""Local images: told by their first bytes, size checked before reading, read in a worker thread."""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from modelyard.tools.inputs import image_part

pytestmark = pytest.mark.anyio

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"GIF87a\x01\x00\x01\x00", "image/gif"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
    ],
    ids=["png", "jpeg", "gif87a", "gif89a", "webp"],
)
@pytest.mark.parametrize("name", ["picture", "picture.txt", "picture.png"])
async def test_a_local_image_type_is_told_by_its_first_bytes_not_its_name(
    tmp_path: Path, head: bytes, mime: str, name: str
) -> None:
    """PNG, JPEG, GIF and WebP are recognised whatever the file is called; the data URI carries every byte."""
    path = tmp_path / name
    path.write_bytes(head)
    part = await image_part(str(path), [tmp_path])
    assert part["image_url"]["url"] == f"data:{mime};base64,{base64.b64encode(head).decode()}"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("credentials", b"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\n"),
        ("notes.png", b"hunter2 is the password\n"),
        ("empty.png", b""),
        ("short.gif", b"GIF8"),
    ],
    ids=["no extension", "an image extension", "empty", "a truncated signature"],
)
async def test_a_local_file_that_is_not_an_image_is_refused_naming_the_accepted_types(
    tmp_path: Path, name: str, content: bytes
) -> None:
    """Whatever its name, a file without an image signature is refused; the message quotes none of its bytes."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ToolError, match="not a PNG, JPEG, GIF or WebP image") as refused:
        await image_part(str(path), [tmp_path])
    assert not content or content.decode() not in str(refused.value)


async def test_a_local_image_over_20_mb_is_refused_without_being_read(tmp_path: Path) -> None:
    """A 300 MB (sparse) file is refused from its size alone: nothing near its size is allocated."""
    huge = tmp_path / "huge.png"
    with huge.open("wb") as file:
        file.write(PNG)
        file.truncate(300 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(ToolError, match="larger than 20 MB"):
            await image_part(str(huge), [tmp_path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"{peak / 2**20:.0f} MiB allocated to refuse a file over 20 MB"


async def test_a_local_image_of_exactly_20_mb_is_accepted(tmp_path: Path) -> None:
    """The limit is inclusive: 20 MB is sent, every byte of it."""
    edge = tmp_path / "edge.png"
    with edge.open("wb") as file:
        file.write(PNG)
        file.truncate(20 * 1024 * 1024)
    url = (await image_part(str(edge), [tmp_path]))["image_url"]["url"]
    assert len(base64.b64decode(url.split(",", 1)[1])) == 20 * 1024 * 1024


async def test_a_file_name_too_long_for_the_file_system_is_refused_not_crashed_on(tmp_path: Path) -> None:
    """The operating system's refusal becomes a message, not an unexpected error."""
    with pytest.raises(ToolError, match="cannot be read"):
        await image_part(str(tmp_path / ("a" * 300 + ".png")), [tmp_path])
