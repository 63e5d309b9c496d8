"""Views of the bakery example site: a home page and an upload endpoint.

There is no health view on purpose: the site file checks the home page.
"""
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Image

RELEASE = "v1"


def home(request):
    return render(
        request,
        "home.html",
        {"release": RELEASE, "images": Image.objects.all()[:10]},
    )


@csrf_exempt  # an API-style endpoint, like a CMS admin's uploader
@require_POST
def upload(request):
    """Saves the multipart field `file` through the model's FileField, so the
    storage writes it under MEDIA_ROOT/original_images/ (made when missing)."""
    upload = request.FILES.get("file")
    if upload is None:
        return JsonResponse({"error": "no file field"}, status=400)
    title = request.POST.get("title") or upload.name
    image = Image.objects.create(title=title[:255], file=upload)
    return JsonResponse(
        {"url": image.file.url, "name": image.file.name, "release": RELEASE},
        status=201,
    )
