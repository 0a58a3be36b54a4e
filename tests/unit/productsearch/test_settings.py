import pytest

from emu.config import EmuSettings
from pelican.config import PelicanSettings
from productsearch.settings import (ConfigError, DatabaseSettings, DatabaseTimeouts, EmbeddingSettings, IndexSettings,
                                    QueueSettings)


def test_database_from_pg_variables_quotes_credentials_and_defaults_to_verified_tls():
    s = DatabaseSettings.from_env({"PGHOST": "db.internal", "PGUSER": "app", "PGPASSWORD": "p@ss:/w", "PGSSLROOTCERT": "/etc/ssl/rds.pem"})
    assert s.url == "postgresql://app:p%40ss%3A%2Fw@db.internal:5432/products?sslmode=verify-full&sslrootcert=/etc/ssl/rds.pem"
    assert "p%40ss" not in s.redacted() and "p%40ss" not in repr(s)
    read = DatabaseSettings.read({"DATABASE_URL": "postgresql://u:hunter2@h/db", "PGPASSWORD": "hunter2"})
    assert "hunter2" not in repr(read) and "hunter2" not in str(read.model_dump())


@pytest.mark.parametrize("settings, env, name", [
    (DatabaseSettings, {}, "PGHOST"),
    (DatabaseSettings, {"PGHOST": "h", "PGUSER": "u"}, "PGPASSWORD"),
    (DatabaseSettings, {"PGHOST": "h", "PGUSER": "u", "PGPASSWORD": "p", "PGPORT": "abc"}, "PGPORT"),
    (DatabaseSettings, {"PGHOST": "h", "PGUSER": "u", "PGPASSWORD": "p", "PGSSLMODE": "sometimes"}, "PGSSLMODE"),
    (DatabaseSettings, {"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    (EmbeddingSettings, {"EMBEDDING_DEVICE": "tpu"}, "EMBEDDING_DEVICE"),
    (EmbeddingSettings, {"EMBEDDING_BATCH_SIZE": "0"}, "EMBEDDING_BATCH_SIZE"),
    (EmbeddingSettings, {"INDEXED_TEXT_TEMPLATE": "{name} {colour}"}, "INDEXED_TEXT_TEMPLATE"),
    (EmbeddingSettings, {"EMBEDDING_MODEL_PATH": "/nonexistent"}, "EMBEDDING_MODEL_PATH"),
    (EmbeddingSettings, {"EMBEDDING_QUANTIZE": "int4"}, "EMBEDDING_QUANTIZE"),
])
def test_missing_or_malformed_setting_is_named(settings, env, name):
    with pytest.raises(ConfigError, match=name):
        settings.from_env(env)


def test_queue_settings_name_what_is_wrong():
    with pytest.raises(ConfigError, match="SQS_QUEUE_URL"):
        QueueSettings.from_env({"AWS_REGION": "eu-west-1"})
    with pytest.raises(ConfigError, match="SQS_DLQ_URL"):
        QueueSettings.from_env({"AWS_REGION": "eu-west-1", "SQS_QUEUE_URL": "https://sqs.x/1/q"}, need_dlq=True)
    with pytest.raises(ConfigError, match="AWS_REGION"):
        QueueSettings.from_env({"SQS_QUEUE_URL": "https://sqs.x/1/q"})
    with pytest.raises(ConfigError, match="SNS_TOPIC_ARN"):
        QueueSettings.from_env({"AWS_REGION": "r", "SQS_QUEUE_URL": "https://sqs.x/1/q", "SNS_TOPIC_ARN": "topic"})


def test_index_settings_require_the_key_and_add_https_to_a_bare_host():
    with pytest.raises(ConfigError, match="PINECONE_API_KEY"):
        IndexSettings.from_env({"PINECONE_HOST": "idx.svc.pinecone.io"})
    s = IndexSettings.from_env({"PINECONE_HOST": "idx.svc.pinecone.io", "PINECONE_API_KEY": "k"})
    assert s.host == "https://idx.svc.pinecone.io" and s.tombstone_namespace == "products-deleted"


@pytest.mark.parametrize("settings, env, expected", [
    (EmuSettings, {"EMU_VISIBILITY_TIMEOUT_SECONDS": "600", "EMU_STOP_TIMEOUT_SECONDS": "90"},
     {"visibility_timeout_seconds": 600, "stop_timeout_seconds": 90.0}),
    (PelicanSettings, {"CLOUDWATCH_NAMESPACE": "ProductSearch", "DEPLOYMENT_NAME": "prod"},
     {"cloudwatch_namespace": "ProductSearch", "deployment_name": "prod"}),
])
def test_the_deployments_variables_set_their_fields_and_no_option_does(settings, env, expected, capsys):
    s = settings.from_env(env)
    assert {field: getattr(s, field) for field in expected} == expected
    option = f"--{next(iter(expected)).replace('_', '-')}"
    with pytest.raises(SystemExit) as refused:  # argparse's refusal, as the app's command line gives it
        settings.parse([option, "1"])
    assert refused.value.code == 2 and f"unrecognized arguments: {option}" in capsys.readouterr().err


def test_pelican_settings_bounds():
    with pytest.raises(ConfigError, match="--changes-per-message"):
        PelicanSettings.parse(["--changes-per-message", "100000"])
    assert PelicanSettings.from_env({}).changes_per_message == 150


def test_pelican_tuning_is_no_environment_variable():
    assert PelicanSettings.from_env({"PELICAN_CHANGES_PER_MESSAGE": "5", "changes_per_message": "5"}
                                    ).changes_per_message == 150
    assert PelicanSettings.from_env({}, changes_per_message=5).changes_per_message == 5


def test_pelican_backpressure_settings_default_and_bounds():
    defaults = PelicanSettings.from_env({})
    assert (defaults.max_queued_messages, defaults.queue_check_interval_seconds) == (1000, 5.0)
    scaled = PelicanSettings.parse(["--max-queued-messages", "4", "--queue-check-interval-seconds", "0.2"])
    assert (scaled.max_queued_messages, scaled.queue_check_interval_seconds) == (4, 0.2)
    for name, bad in (("--max-queued-messages", "0"), ("--max-queued-messages", "120001"),
                      ("--queue-check-interval-seconds", "0.01"), ("--queue-check-interval-seconds", "soon")):
        with pytest.raises(ConfigError, match=name):
            PelicanSettings.parse([name, bad])


def test_apps_exit_with_a_message_naming_the_missing_setting():
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin"}
    for module, named in (("pelican", "PGHOST is not set"), ("emu", "AWS_REGION is not set")):
        done = subprocess.run([sys.executable, "-m", module, "run"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"{module}: configuration error: {named}" in done.stderr


def test_database_timeouts_default_to_30s_and_can_be_scaled_down():
    url = "postgresql://u:p@h/db"
    s = DatabaseSettings.from_env({"DATABASE_URL": url, "DATABASE_STATEMENT_TIMEOUT_SECONDS": "2"})
    assert (s.url, s.dead_connection_seconds, s.statement_timeout_seconds) == (url, 30, 30)
    scaled = PelicanSettings.parse(["--database.dead-connection-seconds", "5",
                                    "--database.statement-timeout-seconds", "2"]).database
    pg = DatabaseSettings.from_env({"PGHOST": "h", "PGUSER": "u", "PGPASSWORD": "p"}, timeouts=scaled)
    assert (pg.dead_connection_seconds, pg.statement_timeout_seconds) == (5, 2)
    # Fractions too: a test scales the timeout down with its data (tests/system/test_outbox_scale.py).
    assert DatabaseSettings.from_env({"DATABASE_URL": url}, timeouts=DatabaseTimeouts(statement_timeout_seconds=0.2)
                                     ).statement_timeout_seconds == 0.2


@pytest.mark.parametrize("name, value", [
    ("--database.dead-connection-seconds", "3"),
    ("--database.dead-connection-seconds", "3601"),
    ("--database.dead-connection-seconds", "soon"),
    ("--database.statement-timeout-seconds", "0"),
    ("--database.statement-timeout-seconds", "0.05"),
    ("--database.statement-timeout-seconds", "soon"),
])
def test_bad_database_timeouts_are_named(name, value):
    with pytest.raises(ConfigError, match=name):
        PelicanSettings.parse([name, value])


SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1a2b-AbCdEf"


def test_database_secret_replaces_pg_credentials_and_names_its_region():
    from productsearch.settings import secret_region

    s = DatabaseSettings.from_env({"PGHOST": "db.internal", "DATABASE_SECRET_ARN": SECRET_ARN,
                                   "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert s.url == "postgresql://db.internal:5432/products?sslmode=verify-full"
    assert (s.secret_arn, s.aws_endpoint_url) == (SECRET_ARN, "http://127.0.0.1:5000")
    assert secret_region(SECRET_ARN) == "eu-west-1"
    assert DatabaseSettings.from_env({"DATABASE_URL": "postgresql://h/db"}).secret_arn is None


@pytest.mark.parametrize("arn", ["my-secret", "arn:aws:ssm:eu-west-1:1:parameter/x", "arn:aws:secretsmanager::1:secret:x"])
def test_a_malformed_database_secret_arn_is_named(arn):
    with pytest.raises(ConfigError, match="DATABASE_SECRET_ARN"):
        DatabaseSettings.from_env({"DATABASE_URL": "postgresql://h/db", "DATABASE_SECRET_ARN": arn})


def test_pelican_metric_settings_default_off_and_validate_the_namespace():
    base: dict[str, str] = {}
    off = PelicanSettings.from_env(base)
    assert (off.cloudwatch_namespace, off.deployment_name, off.metric_interval_seconds) == (None, "local", 60)
    on = PelicanSettings.from_env({**base, "CLOUDWATCH_NAMESPACE": "ProductSearch", "DEPLOYMENT_NAME": "prod"})
    assert (on.cloudwatch_namespace, on.deployment_name) == ("ProductSearch", "prod")
    for bad in ("AWS/SQS", "x" * 256):
        with pytest.raises(ConfigError, match="CLOUDWATCH_NAMESPACE"):
            PelicanSettings.from_env({**base, "CLOUDWATCH_NAMESPACE": bad})
    with pytest.raises(ConfigError, match="--metric-interval-seconds"):
        PelicanSettings.parse(["--metric-interval-seconds", "0"])


def test_queries_are_embedded_on_their_own_defaults_beneath_the_environment():
    frontend = EmbeddingSettings.for_queries({})
    assert (frontend.runtime, frontend.threads) == ("auto", 1)
    emu = EmbeddingSettings.from_env({})
    assert (emu.runtime, emu.threads) == ("torch", 0)
    told = EmbeddingSettings.for_queries({"EMBEDDING_RUNTIME": "torch"})
    assert (told.runtime, told.threads) == ("torch", 1)


@pytest.mark.parametrize("settings, argv", [
    (EmuSettings, ["--retry-base-seconds", "901"]),
    (EmuSettings, ["--outage-retry-max-seconds", "901"]),
    (EmuSettings, ["--index-timeout-seconds", "301"]),
    (PelicanSettings, ["--poll-interval-seconds", "61"]),
    (PelicanSettings, ["--busy-poll-interval-seconds", "61", "--poll-interval-seconds", "60"]),
])
def test_tuning_has_upper_bounds(settings, argv):
    with pytest.raises(ConfigError, match=argv[0]):
        settings.parse(argv)


def test_emu_stop_timeout_is_at_most_fargates_maximum():
    assert EmuSettings.from_env({"EMU_STOP_TIMEOUT_SECONDS": "120"}).stop_timeout_seconds == 120
    with pytest.raises(ConfigError, match="EMU_STOP_TIMEOUT_SECONDS must be between 2.0 and 120.0, got 121"):
        EmuSettings.from_env({"EMU_STOP_TIMEOUT_SECONDS": "121"})
