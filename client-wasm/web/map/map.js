// The public map of violations against lawyers and defenders. Anyone can
// read it, without an account: it draws the counts a space manager
// published into a public space (PROTOCOL §15.4), never a record. The
// country outlines come with the page (world.json, built from Natural
// Earth by `cargo xtask map`); nothing is asked of any other server.
//
// Address: /map/#<public space id>[/<publication id>]

const STRINGS = {
  en: {
    title: "Map of violations against lawyers", language: "Language", space: "Public space", publication: "Publication",
    loading: "Loading…", none_published: "Nothing has been published in this space yet: the map is empty.",
    no_spaces: "There is no public space on this server yet.", choose_space: "Choose a public space to see its map.",
    not_found: "This public space does not exist, or cannot be read without an account here.",
    network: "The server cannot be reached. Check your connection and reload the page.",
    all: "All", country: "Country", region: "Region", type: "Type of violation", year: "Year", gender: "Gender",
    status: "Status", profession: "Profession", count: "Cases", total: "Total", no_region: "Region not given",
    table: "Table", table_caption: "Published counts, as on the map",
    map_label: "World map: countries coloured by the number of cases published. The table below gives the same numbers.",
    legend_none: "No published count", about: "Published by {author} on {date}. Cells of fewer than {k} cases are not published, so that no one can be singled out.",
    suppressed: { one: "{n} group of fewer than {k} cases is left out of these numbers.", other: "{n} groups of fewer than {k} cases are left out of these numbers." },
    by_type_note: "A case with several types of violation counts once under each type.",
    detail_title: "{country}: {n} cases", close: "Close",
    credits: "Borders: Natural Earth (public domain), Equal Earth projection. Borders do not imply any position on disputed territories.",
    types: { threat: "Threat", judicial_harassment: "Judicial harassment", arrest: "Arrest", detention: "Detention", assault: "Assault", disbarment: "Disbarment", killing: "Killing", surveillance: "Surveillance", disappearance: "Enforced disappearance", travel_ban: "Travel ban", smear_campaign: "Smear campaign", other: "Other" },
    genders: { woman: "Woman", man: "Man", non_binary: "Non-binary", undisclosed: "Not disclosed" },
    statuses: { open: "Open", ongoing: "Ongoing", closed: "Closed" },
    professions: { lawyer: "Lawyer", defender: "Human-rights defender", journalist: "Journalist", judge: "Judge", trainee: "Trainee lawyer", other: "Other" },
  },
  fr: {
    title: "Carte des violations contre les avocats", language: "Langue", space: "Espace public", publication: "Publication",
    loading: "Chargement…", none_published: "Rien n’a encore été publié dans cet espace\u202f: la carte est vide.",
    no_spaces: "Ce serveur n’a pas encore d’espace public.", choose_space: "Choisissez un espace public pour voir sa carte.",
    not_found: "Cet espace public n’existe pas, ou ne se lit pas sans compte ici.",
    network: "Le serveur est injoignable. Vérifiez votre connexion et rechargez la page.",
    all: "Tous", country: "Pays", region: "Région", type: "Type de violation", year: "Année", gender: "Genre",
    status: "Statut", profession: "Profession", count: "Cas", total: "Total", no_region: "Région non indiquée",
    table: "Tableau", table_caption: "Chiffres publiés, tels que sur la carte",
    map_label: "Carte du monde\u202f: pays colorés selon le nombre de cas publiés. Le tableau ci-dessous donne les mêmes chiffres.",
    legend_none: "Aucun chiffre publié", about: "Publié par {author} le {date}. Les cases de moins de {k} cas ne sont pas publiées, pour que personne ne puisse être identifié.",
    suppressed: { one: "{n} groupe de moins de {k} cas est exclu de ces chiffres.", other: "{n} groupes de moins de {k} cas sont exclus de ces chiffres." },
    by_type_note: "Un cas qui compte plusieurs types de violation est compté une fois pour chacun.",
    detail_title: "{country}\u202f: {n} cas", close: "Fermer",
    credits: "Frontières\u202f: Natural Earth (domaine public), projection Equal Earth. Les frontières n’impliquent aucune position sur les territoires contestés.",
    types: { threat: "Menace", judicial_harassment: "Harcèlement judiciaire", arrest: "Arrestation", detention: "Détention", assault: "Agression", disbarment: "Radiation", killing: "Meurtre", surveillance: "Surveillance", disappearance: "Disparition forcée", travel_ban: "Interdiction de voyager", smear_campaign: "Campagne de dénigrement", other: "Autre" },
    genders: { woman: "Femme", man: "Homme", non_binary: "Non binaire", undisclosed: "Non précisé" },
    statuses: { open: "Ouvert", ongoing: "En cours", closed: "Clos" },
    professions: { lawyer: "Avocat·e", defender: "Défenseur·e des droits humains", journalist: "Journaliste", judge: "Juge", trainee: "Avocat·e stagiaire", other: "Autre" },
  },
  ar: {
    title: "خريطة الانتهاكات ضد المحامين", language: "اللغة", space: "الفضاء العام", publication: "المنشور",
    loading: "جارٍ التحميل…", none_published: "لم يُنشر شيء في هذا الفضاء بعد: الخريطة فارغة.",
    no_spaces: "لا يوجد فضاء عام على هذا الخادم بعد.", choose_space: "اختر فضاءً عامًا لعرض خريطته.",
    not_found: "هذا الفضاء العام غير موجود، أو لا يمكن قراءته هنا دون حساب.",
    network: "تعذّر الوصول إلى الخادم. تحقّق من اتصالك وأعد تحميل الصفحة.",
    all: "الكل", country: "البلد", region: "المنطقة", type: "نوع الانتهاك", year: "السنة", gender: "النوع الاجتماعي",
    status: "الحالة", profession: "المهنة", count: "الحالات", total: "المجموع", no_region: "المنطقة غير محددة",
    table: "جدول", table_caption: "الأرقام المنشورة، كما على الخريطة",
    map_label: "خريطة العالم: البلدان ملوّنة بحسب عدد الحالات المنشورة. يعرض الجدول أدناه الأرقام نفسها.",
    legend_none: "لا أرقام منشورة", about: "نشره {author} في {date}. لا تُنشر الخانات التي تضم أقل من {k} حالات، حتى لا يمكن التعرّف على أي شخص.",
    suppressed: { zero: "لم تُستبعد أي مجموعة.", one: "استُبعدت مجموعة واحدة تضم أقل من {k} حالات من هذه الأرقام.", two: "استُبعدت مجموعتان تضم كل منهما أقل من {k} حالات من هذه الأرقام.", few: "استُبعدت {n} مجموعات تضم كل منها أقل من {k} حالات من هذه الأرقام.", many: "استُبعدت {n} مجموعة تضم كل منها أقل من {k} حالات من هذه الأرقام.", other: "استُبعدت {n} مجموعة تضم كل منها أقل من {k} حالات من هذه الأرقام." },
    by_type_note: "الحالة التي تشمل عدة أنواع من الانتهاكات تُحسب مرة لكل نوع.",
    detail_title: "{country}: {n} حالات", close: "إغلاق",
    credits: "الحدود: Natural Earth (ملك عام)، إسقاط Equal Earth. لا تعني الحدود أي موقف من الأراضي المتنازع عليها.",
    types: { threat: "تهديد", judicial_harassment: "مضايقة قضائية", arrest: "اعتقال", detention: "احتجاز", assault: "اعتداء", disbarment: "شطب من النقابة", killing: "قتل", surveillance: "مراقبة", disappearance: "اختفاء قسري", travel_ban: "منع من السفر", smear_campaign: "حملة تشهير", other: "أخرى" },
    genders: { woman: "امرأة", man: "رجل", non_binary: "غير ثنائي", undisclosed: "غير مُصرّح به" },
    statuses: { open: "مفتوحة", ongoing: "جارية", closed: "مغلقة" },
    professions: { lawyer: "محامٍ/محامية", defender: "مدافع/ة عن حقوق الإنسان", journalist: "صحفي/ة", judge: "قاضٍ/قاضية", trainee: "محامٍ متدرّب", other: "أخرى" },
  },
  de: {
    title: "Karte der Übergriffe auf Anwältinnen und Anwälte", language: "Sprache", space: "Öffentlicher Bereich", publication: "Veröffentlichung",
    loading: "Wird geladen…", none_published: "In diesem Bereich wurde noch nichts veröffentlicht: Die Karte ist leer.",
    no_spaces: "Auf diesem Server gibt es noch keinen öffentlichen Bereich.", choose_space: "Wählen Sie einen öffentlichen Bereich, um seine Karte zu sehen.",
    not_found: "Diesen öffentlichen Bereich gibt es nicht, oder er ist hier ohne Konto nicht lesbar.",
    network: "Der Server ist nicht erreichbar. Prüfen Sie Ihre Verbindung und laden Sie die Seite neu.",
    all: "Alle", country: "Land", region: "Region", type: "Art des Übergriffs", year: "Jahr", gender: "Geschlecht",
    status: "Stand", profession: "Beruf", count: "Fälle", total: "Summe", no_region: "Region nicht angegeben",
    table: "Tabelle", table_caption: "Veröffentlichte Zahlen, wie auf der Karte",
    map_label: "Weltkarte: Länder nach der Zahl der veröffentlichten Fälle eingefärbt. Die Tabelle darunter nennt dieselben Zahlen.",
    legend_none: "Keine veröffentlichte Zahl", about: "Veröffentlicht von {author} am {date}. Felder mit weniger als {k} Fällen werden nicht veröffentlicht, damit niemand erkennbar wird.",
    suppressed: { one: "{n} Gruppe mit weniger als {k} Fällen ist in diesen Zahlen nicht enthalten.", other: "{n} Gruppen mit weniger als {k} Fällen sind in diesen Zahlen nicht enthalten." },
    by_type_note: "Ein Fall mit mehreren Arten von Übergriffen zählt bei jeder Art einmal.",
    detail_title: "{country}: {n} Fälle", close: "Schließen",
    credits: "Grenzen: Natural Earth (gemeinfrei), Equal-Earth-Projektion. Die Grenzen bedeuten keine Stellungnahme zu umstrittenen Gebieten.",
    types: { threat: "Drohung", judicial_harassment: "Justizielle Schikane", arrest: "Festnahme", detention: "Haft", assault: "Angriff", disbarment: "Ausschluss aus der Anwaltschaft", killing: "Tötung", surveillance: "Überwachung", disappearance: "Verschwindenlassen", travel_ban: "Ausreiseverbot", smear_campaign: "Verleumdungskampagne", other: "Sonstiges" },
    genders: { woman: "Frau", man: "Mann", non_binary: "Nicht-binär", undisclosed: "Nicht angegeben" },
    statuses: { open: "Offen", ongoing: "Laufend", closed: "Abgeschlossen" },
    professions: { lawyer: "Anwält·in", defender: "Menschenrechtsverteidiger·in", journalist: "Journalist·in", judge: "Richter·in", trainee: "Referendar·in", other: "Sonstiges" },
  },
  pt: {
    title: "Mapa das violações contra advogados", language: "Idioma", space: "Espaço público", publication: "Publicação",
    loading: "Carregando…", none_published: "Nada foi publicado neste espaço ainda: o mapa está vazio.",
    no_spaces: "Ainda não há espaço público neste servidor.", choose_space: "Escolha um espaço público para ver o seu mapa.",
    not_found: "Este espaço público não existe, ou não pode ser lido sem conta aqui.",
    network: "Não foi possível contatar o servidor. Verifique sua conexão e recarregue a página.",
    all: "Todos", country: "País", region: "Região", type: "Tipo de violação", year: "Ano", gender: "Gênero",
    status: "Situação", profession: "Profissão", count: "Casos", total: "Total", no_region: "Região não indicada",
    table: "Tabela", table_caption: "Números publicados, como no mapa",
    map_label: "Mapa-múndi: países coloridos pelo número de casos publicados. A tabela abaixo dá os mesmos números.",
    legend_none: "Nenhum número publicado", about: "Publicado por {author} em {date}. Células com menos de {k} casos não são publicadas, para que ninguém possa ser identificado.",
    suppressed: { one: "{n} grupo com menos de {k} casos ficou fora destes números.", other: "{n} grupos com menos de {k} casos ficaram fora destes números." },
    by_type_note: "Um caso com vários tipos de violação conta uma vez para cada tipo.",
    detail_title: "{country}: {n} casos", close: "Fechar",
    credits: "Fronteiras: Natural Earth (domínio público), projeção Equal Earth. As fronteiras não implicam posição sobre territórios disputados.",
    types: { threat: "Ameaça", judicial_harassment: "Assédio judicial", arrest: "Prisão", detention: "Detenção", assault: "Agressão", disbarment: "Cassação do registro", killing: "Assassinato", surveillance: "Vigilância", disappearance: "Desaparecimento forçado", travel_ban: "Proibição de viajar", smear_campaign: "Campanha de difamação", other: "Outro" },
    genders: { woman: "Mulher", man: "Homem", non_binary: "Não binário", undisclosed: "Não informado" },
    statuses: { open: "Aberto", ongoing: "Em andamento", closed: "Encerrado" },
    professions: { lawyer: "Advogado(a)", defender: "Defensor(a) de direitos humanos", journalist: "Jornalista", judge: "Juiz(a)", trainee: "Advogado(a) estagiário(a)", other: "Outro" },
  },
};

/** Colours of the counts, light to dark (ColorBrewer "Blues", 5 classes). */
const SCALE = ["#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c"];
const NONE = "#e4e7ea";
const SVG = "http://www.w3.org/2000/svg";

let lang = "en";
/** @type {{countries: {code: string, name: string, d: string}[], width: number, height: number} | null} */
let world = null;
/** The publication shown: `{id, title, author, updated, aggregate: {dims, k, cells, suppressed}}`. */
let shown = null;
/** The filter chosen per dimension (other than the place). */
const chosen = new Map();
/** The country whose breakdown is open. */
let open = "";

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function pickLanguage() {
  const asked = new URLSearchParams(location.search).get("lang");
  for (const tag of [asked, ...(navigator.languages?.length ? navigator.languages : [navigator.language])]) {
    const primary = String(tag || "").toLowerCase().split("-")[0];
    if (Object.hasOwn(STRINGS, primary)) return primary;
  }
  return "en";
}

function t(key, vars = {}) {
  let s = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  if (typeof s === "object") s = s[new Intl.PluralRules(lang).select(vars.n)] ?? s.other;
  return s.replace(/\{(\w+)\}/g, (_, k) => fmt(vars[k]));
}

function fmt(v) {
  if (typeof v === "number") return new Intl.NumberFormat(lang).format(v);
  return `\u2068${String(v ?? "")}\u2069`;
}

/** A value of a dimension as people read it. */
function label(dim, value) {
  if (dim === "country") return countryName(value);
  if (dim === "region") return value ? `${value}` : t("no_region");
  const table = { type: "types", gender: "genders", status: "statuses", profession: "professions" }[dim];
  if (table) return STRINGS[lang][table][value] ?? STRINGS.en[table][value] ?? value.replace(/_/g, " ");
  return value;
}

function countryName(code) {
  try {
    return new Intl.DisplayNames([lang], { type: "region" }).of(code) || code;
  } catch (_) {
    return code;
  }
}

/** The country a cell counts in (every aggregate counts by country). */
function countryOf(cell, dims) {
  return cell.values[dims.indexOf("country")] ?? "";
}

async function get(path) {
  const res = await fetch(path, { headers: { accept: "application/json" } });
  if (!res.ok) {
    const err = new Error(`${res.status}`);
    err.status = res.status;
    throw err;
  }
  return res.json();
}

function say(key, vars) {
  $("status").textContent = key ? t(key, vars) : "";
}

function setLanguage(l) {
  lang = Object.hasOwn(STRINGS, l) ? l : "en";
  document.documentElement.lang = lang;
  document.documentElement.dir = lang === "ar" ? "rtl" : "ltr";
  $("language").value = lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  document.title = shown ? `${shown.title} — ${t("title")}` : t("title");
  $("credits").textContent = t("credits");
  $("map-label").textContent = t("map_label");
  if (lastStatus) say(...lastStatus);
  draw();
}

let lastStatus = null;
function state(s, key, vars) {
  document.body.dataset.state = s;
  lastStatus = key ? [key, vars] : null;
  say(key, vars);
}

/** The cells that pass the filters. */
function filtered() {
  const { dims, cells } = shown.aggregate;
  return cells.filter((cell) => dims.every((d, i) => !chosen.get(d) || cell.values[i] === chosen.get(d)));
}

function draw() {
  if (!world) return;
  const svg = $("map");
  const cells = shown ? filtered() : [];
  const dims = shown ? shown.aggregate.dims : [];
  /** @type {Map<string, number>} */
  const totals = new Map();
  for (const cell of cells) {
    const c = countryOf(cell, dims);
    totals.set(c, (totals.get(c) || 0) + cell.count);
  }
  const max = Math.max(0, ...totals.values());
  // Class i holds the counts in (i·max/5, (i+1)·max/5], as the legend says.
  const colour = (n) => (n ? SCALE[Math.ceil((SCALE.length * n) / max) - 1] : NONE);
  svg.setAttribute("viewBox", `0 0 ${world.width} ${world.height}`);
  svg.replaceChildren(...world.countries.map((c) => {
    const n = c.code ? totals.get(c.code) || 0 : 0;
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", c.d);
    path.setAttribute("fill", colour(n));
    if (c.code) path.dataset.code = c.code;
    path.dataset.count = String(n);
    if (n) {
      // A country with counts opens its breakdown, by pointer or keyboard.
      path.classList.add("has");
      path.setAttribute("tabindex", "0");
      path.setAttribute("role", "button");
      path.setAttribute("aria-label", `${countryName(c.code)}: ${fmt(n)}`);
      if (c.code === open) path.classList.add("chosen");
      const choose = () => {
        open = c.code;
        draw();
        $("detail").focus();
      };
      path.addEventListener("click", choose);
      path.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          choose();
        }
      });
    }
    const title = document.createElementNS(SVG, "title");
    title.textContent = c.code ? `${countryName(c.code)}: ${fmt(n)}` : c.name;
    path.append(title);
    return path;
  }));
  // The legend: the classes' upper bounds.
  const swatch = (fill) => {
    const s = document.createElementNS(SVG, "svg");
    s.setAttribute("viewBox", "0 0 10 10");
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("width", "10"); r.setAttribute("height", "10"); r.setAttribute("fill", fill);
    s.append(r);
    return s;
  };
  const bounds = [];
  for (let i = 0; i < SCALE.length && max; i++) {
    const lo = Math.floor((i * max) / SCALE.length) + 1;
    const hi = Math.floor(((i + 1) * max) / SCALE.length);
    if (hi >= lo) bounds.push(h("span", {}, swatch(SCALE[i]), lo === hi ? fmt(lo) : `${fmt(lo)}–${fmt(hi)}`));
  }
  $("legend").replaceChildren(h("span", {}, swatch(NONE), t("legend_none")), ...bounds);
  if (!shown) {
    $("table").replaceChildren();
    $("detail").hidden = true;
    $("filters").hidden = true;
    $("about").textContent = "";
    $("suppressed").textContent = "";
    return;
  }
  const a = shown.aggregate;
  $("title").textContent = shown.title;
  $("about").textContent = t("about", { author: shown.author, date: new Intl.DateTimeFormat(lang, { dateStyle: "long" }).format(new Date(shown.updated * 1000)), k: a.k });
  $("suppressed").textContent = [a.suppressed ? t("suppressed", { n: a.suppressed, k: a.k }) : "", a.dims.includes("type") && !chosen.get("type") ? t("by_type_note") : ""].filter(Boolean).join(" ");
  drawFilters();
  drawTable(cells, totals);
  drawDetail(cells, totals);
}

function drawFilters() {
  const a = shown.aggregate;
  const form = $("filters");
  const others = a.dims.filter((d) => d !== "country" && d !== "region");
  form.hidden = !others.length;
  form.replaceChildren(...others.map((d) => {
    const i = a.dims.indexOf(d);
    const values = [...new Set(a.cells.map((c) => c.values[i]))].sort();
    const select = h("select", { id: `filter-${d}`, name: d, onchange: (e) => { chosen.set(d, e.target.value); draw(); $(`filter-${d}`).focus(); } },
      h("option", { value: "" }, t("all")),
      values.map((v) => h("option", { value: v, selected: chosen.get(d) === v }, label(d, v))));
    return h("div", { class: "field" }, h("label", { for: `filter-${d}` }, t(d)), select);
  }));
}

function drawTable(cells, totals) {
  const a = shown.aggregate;
  // The country first, then its region, then the other dimensions.
  const rank = (d) => (d === "country" ? 0 : d === "region" ? 1 : 2);
  const order = [...a.dims.keys()].sort((x, y) => rank(a.dims[x]) - rank(a.dims[y]) || x - y);
  const rows = [...cells].sort((x, y) => {
    const cx = countryName(countryOf(x, a.dims)), cy = countryName(countryOf(y, a.dims));
    return cx.localeCompare(cy, lang) || x.values.join().localeCompare(y.values.join());
  });
  const head = h("tr", {}, order.map((i) => h("th", { scope: "col" }, t(a.dims[i]))), h("th", { scope: "col", class: "n" }, t("count")));
  $("table").replaceChildren(
    h("caption", {}, t("table_caption")),
    h("thead", {}, head),
    h("tbody", {}, rows.map((cell) => h("tr", { "data-country": countryOf(cell, a.dims) },
      order.map((i) => h("td", {}, label(a.dims[i], cell.values[i]))),
      h("td", { class: "n" }, fmt(cell.count))))),
    h("tfoot", {}, [...totals.entries()].sort((x, y) => countryName(x[0]).localeCompare(countryName(y[0]), lang)).map(([c, n]) =>
      h("tr", { class: "total", "data-total": c }, h("th", { scope: "row", colspan: order.length }, `${t("total")} — ${countryName(c)}`), h("td", { class: "n" }, fmt(n))))));
}

function drawDetail(cells, totals) {
  const box = $("detail");
  if (!open || !totals.get(open)) {
    box.hidden = true;
    return;
  }
  const a = shown.aggregate;
  const mine = cells.filter((c) => countryOf(c, a.dims) === open);
  const lists = a.dims.filter((d) => d !== "country").map((d) => {
    const i = a.dims.indexOf(d);
    const sums = new Map();
    for (const c of mine) sums.set(c.values[i], (sums.get(c.values[i]) || 0) + c.count);
    return h("div", {}, h("strong", {}, t(d)), h("ul", {}, [...sums.entries()].sort((x, y) => y[1] - x[1]).map(([v, n]) => h("li", {}, `\u2068${label(d, v)}\u2069: ${fmt(n)}`))));
  });
  box.replaceChildren(h("h2", {}, t("detail_title", { country: countryName(open), n: totals.get(open) })), ...lists,
    h("button", { type: "button", onclick: () => { open = ""; draw(); } }, t("close")));
  box.hidden = false;
}

/** Shows publication `id` of `space` (the newest if none is named). */
async function showSpace(space, id) {
  state("loading", "loading");
  let list;
  try {
    list = (await get(`/v1/public/${encodeURIComponent(space)}/aggregates`)).aggregates;
  } catch (err) {
    shown = null;
    draw();
    return state("error", err.status ? "not_found" : "network");
  }
  const choose = $("publication");
  choose.replaceChildren(...list.map((p) => h("option", { value: p.id }, p.title)));
  $("choose-publication").hidden = list.length < 2;
  if (!list.length) {
    shown = null;
    draw();
    return state("empty", "none_published");
  }
  const pick = list.find((p) => p.id === id) || list[0];
  choose.value = pick.id;
  try {
    shown = await get(`/v1/public/${encodeURIComponent(space)}/aggregates/${encodeURIComponent(pick.id)}`);
  } catch (err) {
    return state("error", err.status ? "not_found" : "network");
  }
  chosen.clear();
  open = "";
  document.title = `${shown.title} — ${t("title")}`;
  state("ready");
  draw();
}

async function route() {
  const [space, id] = location.hash.replace(/^#\/?/, "").split("/");
  if (space) {
    $("choose-space").hidden = true;
    return showSpace(space, id);
  }
  // No space named: offer the public spaces.
  shown = null;
  draw();
  try {
    const { spaces } = await get("/v1/public");
    const select = $("space");
    select.replaceChildren(h("option", { value: "" }, "—"), ...spaces.map((s) => h("option", { value: s.id }, s.name || s.id)));
    $("choose-space").hidden = !spaces.length;
    state("empty", spaces.length ? "choose_space" : "no_spaces");
  } catch (err) {
    state("error", "network");
  }
}

async function start() {
  setLanguage(pickLanguage());
  $("language").addEventListener("change", (e) => setLanguage(e.target.value));
  $("space").addEventListener("change", (e) => { if (e.target.value) location.hash = `#${e.target.value}`; });
  $("publication").addEventListener("change", (e) => {
    const [space] = location.hash.replace(/^#\/?/, "").split("/");
    location.hash = `#${space}/${e.target.value}`;
  });
  window.addEventListener("hashchange", route);
  try {
    world = await get("world.json");
  } catch (_) {
    return state("error", "network");
  }
  await route();
}

start();
