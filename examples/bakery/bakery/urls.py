from django.contrib import admin
from django.contrib.sitemaps.views import sitemap
from django.urls import path

from gallery import views
from gallery.sitemaps import StaticViewSitemap

urlpatterns = [
    path("", views.home, name="home"),
    path("upload/", views.upload, name="upload"),
    path("admin/", admin.site.urls),
    path(
        "sitemap.xml",
        sitemap,
        {"sitemaps": {"pages": StaticViewSitemap}},
        name="django.contrib.sitemaps.views.sitemap",
    ),
]
