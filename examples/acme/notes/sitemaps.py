from django.contrib.sitemaps import Sitemap

from .models import Note


class NoteSitemap(Sitemap):
    def items(self):
        return Note.objects.all()[:1000]

    def lastmod(self, obj):
        return obj.created
