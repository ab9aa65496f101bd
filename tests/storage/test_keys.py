from pipeline.storage.keys import parse_raw_key


def test_raw_keys():
    rec = parse_raw_key("recordings/2026-11-20/call-001.wav", "recordings/", size=10, etag='"abc"')
    assert (rec.call_id, rec.call_date, rec.etag) == ("call-001", "2026-11-20", "abc")
    assert rec.metadata_key == "recordings/2026-11-20/call-001.json"
    # Metadata, folders, wrong depth and bad dates are not recordings.
    for key in ["recordings/2026-11-20/call-001.json", "recordings/2026-11-20/", "recordings/x.wav",
                "recordings/2026-13/a.wav", "other/2026-11-20/a.wav", "recordings/2026-11-20/sub/a.wav"]:
        assert parse_raw_key(key, "recordings/") is None, key


def test_non_media_extension_still_counts_so_it_gets_quarantined():
    assert parse_raw_key("recordings/2026-11-20/notes.txt", "recordings/").call_id == "notes"
