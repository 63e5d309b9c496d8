from django.db import models


class Image(models.Model):
    """An uploaded file; Django's storage keeps it under MEDIA_ROOT."""

    title = models.CharField(max_length=255)
    file = models.FileField(upload_to="original_images/")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return self.title
