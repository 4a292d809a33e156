"""``lmaload report``: results documents as one self-contained HTML page with plots
(``page``), drawn with matplotlib (``plots``, the optional extra ``lmaload[report]``) at fixed
places (``layout``)."""
