import uuid

from django import forms

from projects.models import AiModel


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=2000)


class GenerationForm(forms.Form):
    model = forms.ChoiceField(choices=AiModel.choices, initial=AiModel.GPT_4)
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)
    # A fresh key per rendered form: a double-clicked or resubmitted form generates once.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64, required=False)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {})
        kwargs["initial"] = {"idempotency_key": uuid.uuid4().hex, **kwargs["initial"]}
        super().__init__(*args, **kwargs)
