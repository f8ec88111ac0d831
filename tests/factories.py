import factory
from django.utils import timezone

from projects.models import Generation, Project
from teams.models import Invitation, Membership, Organization, Role, User


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class InvitationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invitation

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    role = Role.MEMBER
    nonce = factory.LazyFunction(Invitation.new_nonce)
    expires_at = factory.LazyFunction(Invitation.default_expiry)
    sent_at = factory.LazyFunction(timezone.now)


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Project {n}")
    description = "A project."


class GenerationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Generation

    project = factory.SubFactory(ProjectFactory)
    organization = factory.SelfAttribute("project.organization")
    model = "gpt-4"
    prompt = "Hello"
    result = "World"
    tokens = 4


class CreditPackageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "credits.CreditPackage"

    code = factory.Sequence(lambda n: f"pack-{n}")
    name = factory.Sequence(lambda n: f"Pack {n}")
    credits = 1000
    unit_amount = 1000
