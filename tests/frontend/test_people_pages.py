"""``/people/`` and ``/people/<id>/``: accounts with roles, activity and gold accuracy; who sees which buttons."""

from __future__ import annotations

import pytest

from feedback import handout
from feedback import services as feedback_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def gold_campaign(users, settings, tmp_path):
    """A one-pair campaign whose pair is gold ; the annotator answered it right."""
    from feedback.models import Pair
    from generators import services as generator_services
    from generators.models import ModelVersion
    from tests.support.images import store_images

    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    prompt_set = generator_services.prompt_set_create(name="few", split="eval", prompts=["a red circle"])
    version = ModelVersion.objects.get(base_model=base)
    store_images(version, [(prompt_set.prompts.get(), seed, b"PNG %d" % seed) for seed in (0, 1)], native_size=32)
    campaign = feedback_services.campaign_create(
        name="people-gold",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"]],
    )
    lease = handout.next_assignment(annotator=users["annotator"], campaign=campaign)
    vote, _ = feedback_services.vote_submit(
        annotator=users["annotator"], assignment_id=lease.assignment, submitted="left"
    )
    Pair.objects.filter(pk=vote.pair_id).update(is_gold=True, gold_choice=vote.choice)  # made gold afterwards
    return campaign


def test_people_page_lists_roles_activity_and_gold_accuracy(client, users, gold_campaign):
    client.force_login(users["engineer"])
    page = client.get("/people/").content.decode()

    row = page[page.index('data-username="annotator"') :].split("</tr>")[0]
    cells = [cell.split(">", 1)[1].split("</td>")[0] for cell in row.split("<td")[1:]]
    assert "annotator" in cells[1] and "—" in cells[2] and cells[3].strip() == "yes"  # in no group, active
    assert cells[4].strip() == "1" and cells[5].strip() == "1"  # one campaign, one vote
    assert "1.00" in cells[6] and "(1/1)" in cells[6]
    assert "ago" in cells[7] and "Deactivate" in cells[8]
    # engineers may not manage admins or themselves, nor give the engineer role
    assert "Deactivate" not in page[page.index('data-username="admin"') :].split("</tr>")[0]
    assert "Deactivate" not in page[page.index('data-username="engineer"') :].split("</tr>")[0]
    assert 'value="engineer"' not in page and 'value="reviewer"' in page
    assert 'href="/people/"' in page  # the nav link


def test_admins_may_give_the_engineer_role(client, users):
    client.force_login(users["admin"])
    assert 'value="engineer"' in client.get("/people/").content.decode()


def test_person_page_shows_quality_per_campaign(client, users, gold_campaign):
    from core.models import AnnotatorGroup

    AnnotatorGroup.objects.create(name="day-shift").members.add(users["annotator"])
    client.force_login(users["engineer"])
    page = client.get(f"/people/{users['annotator'].pk}/").content.decode()

    assert "people-gold" in page and "(1/1)" in page and "day-shift" in page
    table = page[page.index('id="person-campaigns"') :]
    assert "<td>yes</td>" in table  # assigned


def test_the_people_link_is_for_engineers_only(client, users):
    client.force_login(users["reviewer"])
    assert 'href="/people/"' not in client.get("/runs/").content.decode()
