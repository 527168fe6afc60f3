"""How the CLI shows a received message's content to a person (``serve``, ``demo``)."""

from __future__ import annotations

import json

from ratatosk.cli.output import describe_content
from ratatosk.domain.content import LocationContent, MediaContent, MediaType, TextContent


def test_a_text_is_quoted_as_json_with_its_characters_kept() -> None:
    assert describe_content(TextContent('Zoë said "hi"\n')) == '"Zoë said \\"hi\\"\\n"'


def test_other_content_is_its_kind_then_its_fields_as_json() -> None:
    media = MediaContent(MediaType.IMAGE, None, "https://example.com/p.jpg", mime_type="image/jpeg")
    kind, _, fields = describe_content(media).partition(" ")
    assert kind == "MediaContent"
    assert json.loads(fields) == {
        "media_type": "Image",
        "file_name": None,
        "url": "https://example.com/p.jpg",
        "mime_type": "image/jpeg",
    }
    where = describe_content(LocationContent(latitude=52.37, longitude=4.89, label="Dam"))
    assert where.startswith("LocationContent {")
    assert json.loads(where.partition(" ")[2])["label"] == "Dam"


def test_no_content_says_so() -> None:
    assert describe_content(None) == "(no content)"
