import pytest

from pipeline.settings import Settings, load_settings


def test_defaults_without_file_or_env():
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.s3.endpoint_url is None  # AWS unless told otherwise


def test_file_then_env_precedence(tmp_path):
    config = tmp_path / "callaffect.toml"
    config.write_text('[s3]\nraw_bucket = "from-file"\nregion = "eu-west-1"\n[ray]\nnum_cpus_per_call = 2\n')
    env = {"CALLAFFECT_S3__RAW_BUCKET": "from-env", "CALLAFFECT_S3__ENDPOINT_URL": "http://127.0.0.1:5000"}
    settings = load_settings(config, env=env)
    assert settings.s3.raw_bucket == "from-env"
    assert settings.s3.region == "eu-west-1"
    assert settings.s3.endpoint_url == "http://127.0.0.1:5000"
    assert settings.ray.num_cpus_per_call == 2.0 and isinstance(settings.ray.num_cpus_per_call, float)


def test_config_path_from_env(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[retention]\nraw_max_age_days = 7\ndry_run = true\n")
    settings = load_settings(env={"CALLAFFECT_CONFIG": str(config)})
    assert settings.retention.raw_max_age_days == 7 and settings.retention.dry_run is True


def test_env_none_clears_optional_and_bool_parsing():
    settings = load_settings(env={"CALLAFFECT_RAY__ADDRESS": "none", "CALLAFFECT_RETENTION__DRY_RUN": "yes"})
    assert settings.ray.address is None
    assert settings.retention.dry_run is True


@pytest.mark.parametrize(
    "text, message",
    [("[s3]\nbucket = 1\n", "unknown setting"), ("[nope]\nx = 1\n", "unknown section"), ("[ray]\nnum_cpus_per_call = 'many'\n", "ray.num_cpus_per_call")],
)
def test_bad_config_is_named(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_settings(config, env={})


def test_fingerprint_tracks_analysis_settings_only(tmp_path):
    base = load_settings(env={})
    moved = load_settings(env={"CALLAFFECT_S3__RAW_BUCKET": "elsewhere"})
    retuned = load_settings(env={"CALLAFFECT_FLAGS__VALENCE_MAX": "-0.5"})
    assert base.fingerprint() == moved.fingerprint()
    assert base.fingerprint() != retuned.fingerprint()
