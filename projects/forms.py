from django import forms

from projects.models import AiModel


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=2000)


class GenerationForm(forms.Form):
    model = forms.ChoiceField(choices=AiModel.choices, initial=AiModel.GPT_4)
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)
