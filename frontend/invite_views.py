"""``/invite/<token>/``: the page an invite link opens. Its holder chooses a username and password and gets an
annotator account (``core.services.invite_accept``), then is logged in. A link that cannot make an account
(unknown, used, withdrawn, expired) answers a page that says why and what to do (404 or 410)."""

from __future__ import annotations

from django import forms
from django.contrib.auth import login
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from core import people, selectors, services

LOGIN_BACKEND = "django.contrib.auth.backends.ModelBackend"


class InviteAcceptForm(forms.Form):
    """The same username and password checks as ``POST /api/v1/users/`` (``core.people``)."""

    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)
    password_again = forms.CharField(widget=forms.PasswordInput, strip=False, label="Password (again)")

    def clean_username(self) -> str:
        return people.check_new_username(self.cleaned_data["username"])

    def clean(self) -> dict:
        data = super().clean()
        if "password" in data and "password_again" in data:
            if data["password"] != data["password_again"]:
                self.add_error("password_again", "The two passwords differ.")
            elif "username" in data:
                try:
                    people.check_new_password(data["password"], data["username"])
                except ValidationError as exc:
                    self.add_error("password", exc)
        return data


def _unusable(request, message: str, status: int):
    return render(request, "frontend/invite_unusable.html", {"message": message}, status=status)


@never_cache
def invite_accept(request, token: str):
    invite = selectors.invites().filter(token_hash=people.invite_token_hash(token)).first()
    problem = people.invite_problem(invite, timezone.now())
    if problem:
        return _unusable(request, problem, 404 if invite is None else 410)
    form = InviteAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.invite_accept(
                token=token, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
            )
        except services.InviteUnusable as exc:
            return _unusable(request, str(exc), 410)
        except ValidationError as exc:  # the name was taken meanwhile
            form.add_error("username", exc.message_dict.get("username", exc.messages))
        else:
            login(request, user, backend=LOGIN_BACKEND)
            return redirect("home")
    return render(request, "frontend/invite_accept.html", {"form": form, "invite": invite})
