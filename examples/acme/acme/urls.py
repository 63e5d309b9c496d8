from django.contrib.sitemaps.views import sitemap
from django.urls import path

from notes import views
from notes.sitemaps import NoteSitemap

urlpatterns = [
    path("", views.index, name="index"),
    path("notes/<int:pk>/", views.note, name="note"),
    path("health/", views.health, name="health"),
    path("sitemap.xml", sitemap, {"sitemaps": {"notes": NoteSitemap}}, name="sitemap"),
]
