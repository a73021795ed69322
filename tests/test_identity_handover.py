"""An identity given for one job never stays behind in Redis: not when the job is cancelled before it
starts, and not when the job stops early."""

from helpers import run_jobs
from test_encryption_api import encrypted_app, restore

from webapp.extensions import get_redis
from webapp.services.encryption import handover_key


def test_a_restore_cancelled_before_it_starts_leaves_no_sealed_identity(app, api, tmp_path):
    record, _, identity, _, _, _ = encrypted_app(app, api, tmp_path)
    operation = restore(api, record, identity=identity).get_json()["data"]
    with app.app_context():
        assert get_redis().exists(handover_key(f"operation:{operation['id']}")) == 1
    assert api.post(f"/operations/{operation['id']}/cancel").status_code == 202
    run_jobs(app)
    with app.app_context():
        assert get_redis().exists(handover_key(f"operation:{operation['id']}")) == 0


def test_a_deep_verify_takes_the_identity_out_of_redis_when_it_runs(app, api, tmp_path):
    record, _, identity, _, _, _ = encrypted_app(app, api, tmp_path)
    response = api.post(f"/backups/{record['id']}/verify", json={"deep": True, "identity": identity})
    operation = response.get_json()["data"]
    with app.app_context():
        slot = handover_key(f"operation:{operation['id']}")
        assert get_redis().exists(slot) == 1
    run_jobs(app)
    assert api.get(f"/operations/{operation['id']}").get_json()["data"]["status"] == "completed"
    with app.app_context():
        assert get_redis().exists(slot) == 0
