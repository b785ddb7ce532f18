"""``python -m data_prep.download``: the Open Images Challenge 2019 files from their public homes, in the layout that
``python -m data_prep`` reads (annotation CSVs at the top, ``{train,validation,test}/<ImageID>.jpg``).

Annotations come over HTTP (``annotations``), the images from the CVDF S3 bucket with unsigned requests
(``images``), a subset is chosen from the box files (``subset``); docs/download.md tells how to run it.
"""
