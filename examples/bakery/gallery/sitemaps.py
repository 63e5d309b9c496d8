"""The sitemap at /sitemap.xml: the home page. Without django.contrib.sites,
Django takes the domain from the request (RequestSite)."""
from django.contrib.sitemaps import Sitemap
from django.urls import reverse


class StaticViewSitemap(Sitemap):
    changefreq = "daily"

    def items(self):
        return ["home"]

    def location(self, item):
        return reverse(item)
