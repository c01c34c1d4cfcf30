// The drop-box page. A witness without an account writes a statement and
// attaches files; each item is sealed on this device (age v1) to the key
// that the link pins, cut into chunks of 1 MiB and uploaded so that a lost
// connection goes on where it stopped. Nothing is written to the device:
// the sealed bytes stay in memory until the server holds all of them.

const STRINGS = {
  en: {
    title: "Send a statement securely",
    intro: "What you write and attach here is encrypted on this device before it leaves it. Only the members of the space that receives it can open it; the server sees only sizes and times. You do not need an account.",
    language: "Language", loading: "Checking the link…",
    box_info: "This drop box accepts submissions until {date}. It can still take {left}.",
    statement: "Your statement",
    statement_hint: "Write in any language you like. You may also just attach files.",
    files: "Add files", files_hint: "Photos, videos, recordings or documents, of any type.",
    files_none: "No file attached yet.",
    files_summary: { one: "{n} file, {size}", other: "{n} files, {size}" },
    remove: "Remove", remove_label: "Remove {name}", send: "Encrypt and send", retry: "Try again",
    progress: "Upload progress",
    bad_link: "This link is incomplete. Please ask the person who sent it to copy the whole link, including the part after the # sign, and send it to you again.",
    key_mismatch: "For your safety, nothing was encrypted or sent: the server’s key is not the one named in your link, or the link is out of date. Please ask the person who sent you the link for a new one.",
    drop_box_closed: "This drop box was closed by the people who opened it and no longer accepts submissions. Please contact the person who sent you the link.",
    drop_box_expired: "This drop box has expired and no longer accepts submissions. Please ask the person who sent you the link for a new one.",
    drop_box_unknown: "This drop box does not exist. Check that you opened the whole link, or ask the person who sent it for a new one.",
    drop_box_full: "This is too large for the drop box: about {size}, and it can take only {left} more. Please remove some files, or ask the person who sent you the link for more room.",
    box_full_now: "This drop box is full and cannot take anything more. Please contact the person who sent you the link.",
    network_load: "The server cannot be reached. Check your connection and try again.",
    network_send: "The server cannot be reached. Check your connection; when you try again, sending goes on where it stopped.",
    err_empty: "Please write a statement or attach at least one file.",
    err_too_many: { one: "At most {n} item can be sent at once (the statement counts as one). Please remove some files and send them afterwards.", other: "At most {n} items can be sent at once (the statement counts as one). Please remove some files and send them afterwards." },
    err_read: "The file {name} could not be read. Please choose it again.",
    err_seal: "This device could not encrypt the submission (it may be short of memory). Try sending fewer or smaller files at once.",
    err_server: "The server refused the submission ({message}). Please try again later.",
    err_code: "The page could not load its encryption code. Check your connection and try again.",
    st_sealing: "Encrypting on this device… ({i} of {n})", st_declaring: "Contacting the server…",
    st_sending: "Sending…", st_finishing: "Finishing…",
    st_retry: { one: "Connection problem. Trying again in {n} second…", other: "Connection problem. Trying again in {n} seconds…" },
    st_busy: { one: "The server is busy. Trying again in {n} second…", other: "The server is busy. Trying again in {n} seconds…" },
    st_offline: "No connection. Sending will go on when the connection comes back.",
    st_key_changed: "The drop box’s key has changed; encrypting again…", sent: "Sent",
    sent_text: "Your submission arrived safely, encrypted. Its reference:",
    sent_hint: "You may give this reference to the people who receive it, so that they can confirm it arrived.",
    sent_advice: "You can close this page. Nothing was kept on this device.",
    again: "Send something else", manual_title: "Without this page",
    manual_intro: "Anyone can also encrypt a file with the standard age tool and send it with curl, one file at a time:",
    manual_note: "This page checked that this recipient key matches your link.",
  },
  fr: {
    title: "Envoyer un témoignage en toute sécurité",
    intro: "Ce que vous écrivez et joignez ici est chiffré sur cet appareil avant de le quitter. Seuls les membres de l’espace destinataire peuvent l’ouvrir\u202f; le serveur ne voit que des tailles et des heures. Vous n’avez besoin d’aucun compte.",
    language: "Langue", loading: "Vérification du lien…",
    box_info: "Cette boîte de dépôt accepte les envois jusqu’au {date}. Elle peut encore recevoir {left}.",
    statement: "Votre témoignage",
    statement_hint: "Écrivez dans la langue de votre choix. Vous pouvez aussi simplement joindre des fichiers.",
    files: "Ajouter des fichiers",
    files_hint: "Photos, vidéos, enregistrements ou documents, de tout type.",
    files_none: "Aucun fichier joint pour l’instant.",
    files_summary: { one: "{n} fichier, {size}", other: "{n} fichiers, {size}" },
    remove: "Retirer", remove_label: "Retirer {name}", send: "Chiffrer et envoyer", retry: "Réessayer",
    progress: "Progression de l’envoi",
    bad_link: "Ce lien est incomplet. Demandez à la personne qui vous l’a envoyé de copier le lien en entier, y compris la partie après le signe #, et de vous le renvoyer.",
    key_mismatch: "Pour votre sécurité, rien n’a été chiffré ni envoyé\u202f: la clé du serveur n’est pas celle qu’indique votre lien, ou le lien n’est plus à jour. Demandez un nouveau lien à la personne qui vous l’a envoyé.",
    drop_box_closed: "Cette boîte de dépôt a été fermée par les personnes qui l’ont ouverte et n’accepte plus d’envois. Contactez la personne qui vous a envoyé le lien.",
    drop_box_expired: "Cette boîte de dépôt a expiré et n’accepte plus d’envois. Demandez un nouveau lien à la personne qui vous l’a envoyé.",
    drop_box_unknown: "Cette boîte de dépôt n’existe pas. Vérifiez que vous avez ouvert le lien en entier, ou demandez-en un nouveau à la personne qui vous l’a envoyé.",
    drop_box_full: "C’est trop volumineux pour la boîte de dépôt\u202f: environ {size}, alors qu’elle ne peut plus recevoir que {left}. Retirez des fichiers, ou demandez plus de place à la personne qui vous a envoyé le lien.",
    box_full_now: "Cette boîte de dépôt est pleine et ne peut plus rien recevoir. Contactez la personne qui vous a envoyé le lien.",
    network_load: "Le serveur est injoignable. Vérifiez votre connexion et réessayez.",
    network_send: "Le serveur est injoignable. Vérifiez votre connexion\u202f; quand vous réessaierez, l’envoi reprendra là où il s’est arrêté.",
    err_empty: "Écrivez un témoignage ou joignez au moins un fichier.",
    err_too_many: { one: "Au plus {n} élément peut être envoyé à la fois (le témoignage compte pour un). Retirez des fichiers et envoyez-les ensuite.", other: "Au plus {n} éléments peuvent être envoyés à la fois (le témoignage compte pour un). Retirez des fichiers et envoyez-les ensuite." },
    err_read: "Le fichier {name} n’a pas pu être lu. Choisissez-le à nouveau.",
    err_seal: "Cet appareil n’a pas pu chiffrer l’envoi (la mémoire manque peut-être). Essayez d’envoyer moins de fichiers, ou des fichiers plus petits, à la fois.",
    err_server: "Le serveur a refusé l’envoi ({message}). Réessayez plus tard.",
    err_code: "La page n’a pas pu charger son code de chiffrement. Vérifiez votre connexion et réessayez.",
    st_sealing: "Chiffrement sur cet appareil… ({i} sur {n})", st_declaring: "Connexion au serveur…",
    st_sending: "Envoi en cours…", st_finishing: "Finalisation…",
    st_retry: { one: "Problème de connexion. Nouvel essai dans {n} seconde…", other: "Problème de connexion. Nouvel essai dans {n} secondes…" },
    st_busy: { one: "Le serveur est occupé. Nouvel essai dans {n} seconde…", other: "Le serveur est occupé. Nouvel essai dans {n} secondes…" },
    st_offline: "Pas de connexion. L’envoi reprendra quand la connexion reviendra.",
    st_key_changed: "La clé de la boîte de dépôt a changé\u202f; nouveau chiffrement…",
    sent: "Envoyé",
    sent_text: "Votre envoi est bien arrivé, chiffré. Sa référence\u202f:",
    sent_hint: "Vous pouvez donner cette référence aux personnes qui le reçoivent, pour qu’elles confirment son arrivée.",
    sent_advice: "Vous pouvez fermer cette page. Rien n’a été conservé sur cet appareil.",
    again: "Envoyer autre chose", manual_title: "Sans cette page",
    manual_intro: "Chacun peut aussi chiffrer un fichier avec l’outil standard age et l’envoyer avec curl, un fichier à la fois\u202f:",
    manual_note: "Cette page a vérifié que cette clé de destinataire correspond à votre lien.",
  },
  ar: {
    title: "إرسال شهادة بأمان",
    intro: "ما تكتبه وما ترفقه هنا يُشفَّر على هذا الجهاز قبل أن يغادره. لا يستطيع فتحه إلا أعضاء المساحة التي تستقبله، أما الخادم فلا يرى سوى الأحجام والأوقات. لا تحتاج إلى حساب.",
    language: "اللغة", loading: "جارٍ التحقق من الرابط…",
    box_info: "يقبل صندوق الإيداع هذا الإرسال حتى {date}. ولا يزال يتّسع لـ {left}.",
    statement: "شهادتك",
    statement_hint: "اكتب بأي لغة تشاء. ويمكنك أيضًا الاكتفاء بإرفاق ملفات.",
    files: "إضافة ملفات", files_hint: "صور أو مقاطع فيديو أو تسجيلات أو مستندات، من أي نوع.",
    files_none: "لم يُرفَق أي ملف بعد.",
    files_summary: { one: "ملف واحد، {size}", two: "ملفان، {size}", few: "{n} ملفات، {size}", many: "{n} ملفًا، {size}", other: "{n} ملف، {size}" },
    remove: "إزالة", remove_label: "إزالة {name}", send: "تشفير وإرسال", retry: "إعادة المحاولة",
    progress: "تقدّم الإرسال",
    bad_link: "هذا الرابط غير مكتمل. يُرجى أن تطلب من الشخص الذي أرسله إليك أن ينسخ الرابط كاملًا، بما في ذلك الجزء الذي يلي العلامة #، وأن يرسله إليك من جديد.",
    key_mismatch: "حفاظًا على سلامتك، لم يُشفَّر أي شيء ولم يُرسَل: مفتاح الخادم ليس المفتاح المذكور في رابطك، أو أن الرابط لم يعد محدَّثًا. يُرجى أن تطلب رابطًا جديدًا من الشخص الذي أرسله إليك.",
    drop_box_closed: "أُغلق صندوق الإيداع هذا من قِبَل من فتحوه، ولم يعد يقبل أي إرسال. يُرجى التواصل مع الشخص الذي أرسل إليك الرابط.",
    drop_box_expired: "انتهت صلاحية صندوق الإيداع هذا ولم يعد يقبل أي إرسال. يُرجى أن تطلب رابطًا جديدًا من الشخص الذي أرسله إليك.",
    drop_box_unknown: "صندوق الإيداع هذا غير موجود. تأكّد من أنك فتحت الرابط كاملًا، أو اطلب رابطًا جديدًا من الشخص الذي أرسله إليك.",
    drop_box_full: "حجم الإرسال أكبر مما يتّسع له صندوق الإيداع: نحو {size}، بينما لا يتّسع إلا لـ {left} إضافية. يُرجى إزالة بعض الملفات، أو طلب مساحة أكبر من الشخص الذي أرسل إليك الرابط.",
    box_full_now: "صندوق الإيداع هذا ممتلئ ولا يمكنه استقبال المزيد. يُرجى التواصل مع الشخص الذي أرسل إليك الرابط.",
    network_load: "تعذّر الوصول إلى الخادم. تحقّق من اتصالك وأعد المحاولة.",
    network_send: "تعذّر الوصول إلى الخادم. تحقّق من اتصالك؛ وعند إعادة المحاولة يُستأنف الإرسال من حيث توقّف.",
    err_empty: "يُرجى كتابة شهادة أو إرفاق ملف واحد على الأقل.",
    err_too_many: { one: "لا يمكن إرسال أكثر من عنصر واحد في المرة الواحدة (وتُحتسب الشهادة عنصرًا). يُرجى إزالة بعض الملفات وإرسالها لاحقًا.", two: "لا يمكن إرسال أكثر من عنصرين في المرة الواحدة (وتُحتسب الشهادة عنصرًا). يُرجى إزالة بعض الملفات وإرسالها لاحقًا.", few: "لا يمكن إرسال أكثر من {n} عناصر في المرة الواحدة (وتُحتسب الشهادة عنصرًا). يُرجى إزالة بعض الملفات وإرسالها لاحقًا.", many: "لا يمكن إرسال أكثر من {n} عنصرًا في المرة الواحدة (وتُحتسب الشهادة عنصرًا). يُرجى إزالة بعض الملفات وإرسالها لاحقًا.", other: "لا يمكن إرسال أكثر من {n} عنصر في المرة الواحدة (وتُحتسب الشهادة عنصرًا). يُرجى إزالة بعض الملفات وإرسالها لاحقًا." },
    err_read: "تعذّرت قراءة الملف {name}. يُرجى اختياره مرة أخرى.",
    err_seal: "تعذّر على هذا الجهاز تشفير الإرسال (ربما لنقص في الذاكرة). حاول إرسال ملفات أقل عددًا أو أصغر حجمًا في المرة الواحدة.",
    err_server: "رفض الخادم الإرسال ({message}). يُرجى المحاولة لاحقًا.",
    err_code: "تعذّر على الصفحة تحميل شيفرة التشفير. تحقّق من اتصالك وأعد المحاولة.",
    st_sealing: "جارٍ التشفير على هذا الجهاز… ({i} من {n})", st_declaring: "جارٍ الاتصال بالخادم…",
    st_sending: "جارٍ الإرسال…", st_finishing: "جارٍ الإنهاء…",
    st_retry: { one: "مشكلة في الاتصال. ستُعاد المحاولة بعد ثانية واحدة…", two: "مشكلة في الاتصال. ستُعاد المحاولة بعد ثانيتين…", few: "مشكلة في الاتصال. ستُعاد المحاولة بعد {n} ثوانٍ…", other: "مشكلة في الاتصال. ستُعاد المحاولة بعد {n} ثانية…" },
    st_busy: { one: "الخادم مشغول. ستُعاد المحاولة بعد ثانية واحدة…", two: "الخادم مشغول. ستُعاد المحاولة بعد ثانيتين…", few: "الخادم مشغول. ستُعاد المحاولة بعد {n} ثوانٍ…", other: "الخادم مشغول. ستُعاد المحاولة بعد {n} ثانية…" },
    st_offline: "لا يوجد اتصال. سيُستأنف الإرسال عند عودة الاتصال.",
    st_key_changed: "تغيّر مفتاح صندوق الإيداع؛ جارٍ التشفير من جديد…", sent: "تم الإرسال",
    sent_text: "وصل إرسالك بأمان، مشفّرًا. مرجعه:",
    sent_hint: "يمكنك إعطاء هذا المرجع للأشخاص الذين يستلمونه ليتأكّدوا من وصوله.",
    sent_advice: "يمكنك إغلاق هذه الصفحة. لم يُحفَظ أي شيء على هذا الجهاز.",
    again: "إرسال شيء آخر", manual_title: "من دون هذه الصفحة",
    manual_intro: "يمكن لأي شخص أيضًا تشفير ملف بأداة age المعيارية وإرساله بأداة curl، ملفًا واحدًا في كل مرة:",
    manual_note: "تحقّقت هذه الصفحة من أن مفتاح المستلم هذا يطابق رابطك.",
  },
  de: {
    title: "Eine Aussage sicher übermitteln",
    intro: "Was Sie hier schreiben und anhängen, wird auf diesem Gerät verschlüsselt, bevor es das Gerät verlässt. Nur die Mitglieder des empfangenden Bereichs können es öffnen; der Server sieht nur Größen und Zeitpunkte. Sie brauchen kein Konto.",
    language: "Sprache", loading: "Link wird geprüft…",
    box_info: "Dieser Briefkasten nimmt Einsendungen bis {date} an. Er kann noch {left} aufnehmen.",
    statement: "Ihre Aussage",
    statement_hint: "Schreiben Sie in einer Sprache Ihrer Wahl. Sie können auch nur Dateien anhängen.",
    files: "Dateien hinzufügen", files_hint: "Fotos, Videos, Tonaufnahmen oder Dokumente jeder Art.",
    files_none: "Noch keine Datei angehängt.",
    files_summary: { one: "{n} Datei, {size}", other: "{n} Dateien, {size}" },
    remove: "Entfernen", remove_label: "{name} entfernen", send: "Verschlüsseln und senden",
    retry: "Erneut versuchen", progress: "Fortschritt der Übertragung",
    bad_link: "Dieser Link ist unvollständig. Bitten Sie die Person, die ihn Ihnen geschickt hat, den ganzen Link zu kopieren – einschließlich des Teils nach dem Zeichen # – und ihn Ihnen erneut zu senden.",
    key_mismatch: "Zu Ihrer Sicherheit wurde nichts verschlüsselt oder gesendet: Der Schlüssel des Servers ist nicht der, den Ihr Link nennt, oder der Link ist veraltet. Bitten Sie die Person, die Ihnen den Link geschickt hat, um einen neuen.",
    drop_box_closed: "Dieser Briefkasten wurde von den Personen, die ihn eingerichtet haben, geschlossen und nimmt keine Einsendungen mehr an. Wenden Sie sich an die Person, die Ihnen den Link geschickt hat.",
    drop_box_expired: "Dieser Briefkasten ist abgelaufen und nimmt keine Einsendungen mehr an. Bitten Sie die Person, die Ihnen den Link geschickt hat, um einen neuen.",
    drop_box_unknown: "Diesen Briefkasten gibt es nicht. Prüfen Sie, ob Sie den ganzen Link geöffnet haben, oder bitten Sie die Person, die ihn geschickt hat, um einen neuen.",
    drop_box_full: "Das ist zu groß für den Briefkasten: etwa {size}, er kann aber nur noch {left} aufnehmen. Entfernen Sie bitte einige Dateien oder bitten Sie die Person, die Ihnen den Link geschickt hat, um mehr Platz.",
    box_full_now: "Dieser Briefkasten ist voll und kann nichts mehr aufnehmen. Wenden Sie sich an die Person, die Ihnen den Link geschickt hat.",
    network_load: "Der Server ist nicht erreichbar. Prüfen Sie Ihre Verbindung und versuchen Sie es erneut.",
    network_send: "Der Server ist nicht erreichbar. Prüfen Sie Ihre Verbindung; beim nächsten Versuch geht die Übertragung dort weiter, wo sie stehen geblieben ist.",
    err_empty: "Schreiben Sie bitte eine Aussage oder hängen Sie mindestens eine Datei an.",
    err_too_many: { one: "Es kann höchstens {n} Teil auf einmal gesendet werden (die Aussage zählt als einer). Entfernen Sie einige Dateien und senden Sie sie danach.", other: "Es können höchstens {n} Teile auf einmal gesendet werden (die Aussage zählt als einer). Entfernen Sie einige Dateien und senden Sie sie danach." },
    err_read: "Die Datei {name} konnte nicht gelesen werden. Wählen Sie sie bitte erneut aus.",
    err_seal: "Dieses Gerät konnte die Einsendung nicht verschlüsseln (vielleicht fehlt Speicher). Senden Sie weniger oder kleinere Dateien auf einmal.",
    err_server: "Der Server hat die Einsendung abgelehnt ({message}). Versuchen Sie es später erneut.",
    err_code: "Die Seite konnte ihren Verschlüsselungscode nicht laden. Prüfen Sie Ihre Verbindung und versuchen Sie es erneut.",
    st_sealing: "Verschlüsselung auf diesem Gerät… ({i} von {n})", st_declaring: "Verbindung zum Server…",
    st_sending: "Wird gesendet…", st_finishing: "Wird abgeschlossen…",
    st_retry: { one: "Verbindungsproblem. Neuer Versuch in {n} Sekunde…", other: "Verbindungsproblem. Neuer Versuch in {n} Sekunden…" },
    st_busy: { one: "Der Server ist ausgelastet. Neuer Versuch in {n} Sekunde…", other: "Der Server ist ausgelastet. Neuer Versuch in {n} Sekunden…" },
    st_offline: "Keine Verbindung. Die Übertragung geht weiter, sobald die Verbindung zurück ist.",
    st_key_changed: "Der Schlüssel des Briefkastens hat sich geändert; es wird neu verschlüsselt…",
    sent: "Gesendet",
    sent_text: "Ihre Einsendung ist verschlüsselt und sicher angekommen. Ihre Referenz:",
    sent_hint: "Sie können diese Referenz den Empfängern nennen, damit sie den Eingang bestätigen können.",
    sent_advice: "Sie können diese Seite schließen. Auf diesem Gerät wurde nichts gespeichert.",
    again: "Etwas anderes senden", manual_title: "Ohne diese Seite",
    manual_intro: "Man kann eine Datei auch mit dem Standardwerkzeug age verschlüsseln und mit curl senden, eine Datei nach der anderen:",
    manual_note: "Diese Seite hat geprüft, dass dieser Empfängerschlüssel zu Ihrem Link passt.",
  },
  pt: {
    title: "Enviar um depoimento em segurança",
    intro: "O que escrever e anexar aqui é cifrado neste dispositivo antes de sair dele. Só os membros do espaço que o recebe o podem abrir; o servidor vê apenas tamanhos e horas. Não precisa de conta.",
    language: "Idioma", loading: "A verificar a ligação…",
    box_info: "Esta caixa de depósito aceita envios até {date}. Ainda pode receber {left}.",
    statement: "O seu depoimento",
    statement_hint: "Escreva na língua que preferir. Também pode apenas anexar ficheiros.",
    files: "Adicionar ficheiros",
    files_hint: "Fotografias, vídeos, gravações ou documentos, de qualquer tipo.",
    files_none: "Ainda não anexou nenhum ficheiro.",
    files_summary: { one: "{n} ficheiro, {size}", other: "{n} ficheiros, {size}" },
    remove: "Remover", remove_label: "Remover {name}", send: "Cifrar e enviar", retry: "Tentar de novo",
    progress: "Progresso do envio",
    bad_link: "Esta ligação está incompleta. Peça à pessoa que lha enviou que copie a ligação inteira, incluindo a parte depois do sinal #, e que volte a enviá-la.",
    key_mismatch: "Para sua segurança, nada foi cifrado nem enviado: a chave do servidor não é a indicada na sua ligação, ou a ligação está desatualizada. Peça uma nova ligação à pessoa que lha enviou.",
    drop_box_closed: "Esta caixa de depósito foi fechada pelas pessoas que a abriram e já não aceita envios. Contacte a pessoa que lhe enviou a ligação.",
    drop_box_expired: "Esta caixa de depósito expirou e já não aceita envios. Peça uma nova ligação à pessoa que lha enviou.",
    drop_box_unknown: "Esta caixa de depósito não existe. Verifique se abriu a ligação completa, ou peça uma nova à pessoa que lha enviou.",
    drop_box_full: "É demasiado grande para a caixa de depósito: cerca de {size}, e ela só pode receber mais {left}. Remova alguns ficheiros, ou peça mais espaço à pessoa que lhe enviou a ligação.",
    box_full_now: "Esta caixa de depósito está cheia e não pode receber mais nada. Contacte a pessoa que lhe enviou a ligação.",
    network_load: "Não foi possível contactar o servidor. Verifique a sua conexão e tente de novo.",
    network_send: "Não foi possível contactar o servidor. Verifique a sua conexão; ao tentar de novo, o envio continua onde parou.",
    err_empty: "Escreva um depoimento ou anexe pelo menos um ficheiro.",
    err_too_many: { one: "Só pode enviar no máximo {n} elemento de cada vez (o depoimento conta como um). Remova alguns ficheiros e envie-os a seguir.", other: "Só pode enviar no máximo {n} elementos de cada vez (o depoimento conta como um). Remova alguns ficheiros e envie-os a seguir." },
    err_read: "Não foi possível ler o ficheiro {name}. Escolha-o de novo.",
    err_seal: "Este dispositivo não conseguiu cifrar o envio (talvez por falta de memória). Tente enviar menos ficheiros, ou ficheiros mais pequenos, de cada vez.",
    err_server: "O servidor recusou o envio ({message}). Tente de novo mais tarde.",
    err_code: "A página não conseguiu carregar o seu código de cifra. Verifique a sua conexão e tente de novo.",
    st_sealing: "A cifrar neste dispositivo… ({i} de {n})", st_declaring: "A contactar o servidor…",
    st_sending: "A enviar…", st_finishing: "A concluir…",
    st_retry: { one: "Problema de conexão. Nova tentativa dentro de {n} segundo…", other: "Problema de conexão. Nova tentativa dentro de {n} segundos…" },
    st_busy: { one: "O servidor está ocupado. Nova tentativa dentro de {n} segundo…", other: "O servidor está ocupado. Nova tentativa dentro de {n} segundos…" },
    st_offline: "Sem conexão. O envio continua quando a conexão for restabelecida.",
    st_key_changed: "A chave da caixa de depósito mudou; a cifrar de novo…",
    sent: "Enviado",
    sent_text: "O seu envio chegou em segurança, cifrado. A sua referência:",
    sent_hint: "Pode dar esta referência às pessoas que o recebem, para que confirmem que chegou.",
    sent_advice: "Pode fechar esta página. Nada ficou guardado neste dispositivo.",
    again: "Enviar outra coisa", manual_title: "Sem esta página",
    manual_intro: "Qualquer pessoa pode também cifrar um ficheiro com a ferramenta padrão age e enviá-lo com curl, um ficheiro de cada vez:",
    manual_note: "Esta página verificou que esta chave de destinatário corresponde à sua ligação.",
  },
};

// Reasons that end the page: nothing can be sent through this link.
const FATAL = ["bad_link", "key_mismatch", "drop_box_closed", "drop_box_expired", "drop_box_unknown"];
// Answers worth the same request again after a pause.
const TRANSIENT = [408, 425, 429, 500, 502, 503, 504];
// Below this a box takes no sealed part at all (an age header alone is ~190 bytes).
const MIN_LEFT = 512;
// A chunk whose upload makes no progress for this long is sent again.
const STALL_MS = 60_000;

const $ = (id) => document.getElementById(id);
const enc = new TextEncoder();
const pause = (s) => new Promise((r) => setTimeout(r, s * 1000));

let lang = pickLanguage();
let wasm = null; // the sealing module
let link = null; // [box id, fingerprint] from the fragment
let box = null; // the box's answer, once its key passed the link's check
let chosen = []; // the File objects to send
let pending = null; // sealed parts not yet delivered (in memory only)
let busy = false;
let fatalReason = null;
let wakeLock = null;
let lastProgress = null;
const shown = new Map(); // element -> [key, vars], worded again on a language switch

class NetError extends Error {}
class Redeclare extends Error {}
class Problem extends Error {
  constructor(key, vars = {}, reason = undefined) { super(key); Object.assign(this, { key, vars, reason }); }
}
class Refusal extends Error {
  constructor(r) { super(String(r.json.message || `HTTP ${r.status}`)); Object.assign(this, { status: r.status, reason: r.json.reason || "" }); }
}

// ---- words -------------------------------------------------------------

function pickLanguage() {
  for (const tag of navigator.languages?.length ? navigator.languages : [navigator.language]) {
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
  if (v instanceof Date) return new Intl.DateTimeFormat(lang, { dateStyle: "long", timeStyle: "short" }).format(v);
  if (v && typeof v === "object" && "bytes" in v) return size(v.bytes, v.mb, v.round);
  if (typeof v === "number") return new Intl.NumberFormat(lang).format(v);
  return `\u2068${String(v ?? "")}\u2069`; // a name isolated, so that it cannot reorder the sentence
}

// Bytes in (decimal) MB, or kB for a small file; room left is rounded
// down and a size up, so that "3.01 MB" never reads as fitting in "3 MB".
function size(bytes, mb = false, roundingMode = "halfExpand") {
  const big = mb || bytes >= 100_000;
  const value = big ? bytes / 1e6 : Math.max(1, Math.round(bytes / 1e3));
  const unit = big ? "megabyte" : "kilobyte";
  return new Intl.NumberFormat(lang, { style: "unit", unit, unitDisplay: "short", roundingMode, maximumFractionDigits: !big ? 0 : bytes < 1e7 ? 2 : 1 }).format(value);
}

function say(el, key, vars) {
  if (!key) return shown.delete(el), (el.textContent = "");
  shown.set(el, [key, vars]);
  const text = t(key, vars);
  if (el.textContent !== text) el.textContent = text;
}

function setLanguage(l) {
  lang = Object.hasOwn(STRINGS, l) ? l : "en";
  document.documentElement.lang = lang;
  document.documentElement.dir = lang === "ar" ? "rtl" : "ltr";
  document.title = t("title");
  $("language").value = lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const [el, [key, vars]] of shown) el.textContent = t(key, vars);
  renderFiles();
  if (lastProgress) progress(...lastProgress);
}

function setState(state, reason) {
  document.body.dataset.state = state;
  if (reason) document.body.dataset.reason = reason;
  else delete document.body.dataset.reason;
}

// ---- the page's states -------------------------------------------------

async function start() {
  say($("send"), "send");
  setLanguage(lang);
  setState("loading");
  say($("status"), "loading");
  try {
    wasm = await import("./pkg/amicus_drop.js");
    await wasm.default({ module_or_path: new URL("./pkg/amicus_drop_bg.wasm", import.meta.url) });
  } catch {
    return fatal("network", "err_code", true);
  }
  link = wasm.parseFragment(location.hash);
  if (!link) return fatal("bad_link");
  try {
    box = await loadBox();
  } catch (e) {
    return failed(e, true);
  }
  if (box.left < MIN_LEFT) return fatal("drop_box_full", "box_full_now");
  showBox();
  say($("status"), null);
  $("drop-form").hidden = false;
  setState("ready");
}

// The box's key and room; a key that is not the one the link pins is never used.
async function loadBox() {
  const r = await persist(() => api("GET", ""), 4, "loading");
  if (r.status === 400) throw new Problem("bad_link", {}, "bad_link");
  if (r.status !== 200) throw new Refusal(r);
  const b = r.json;
  if (typeof b.recipient !== "string" || !wasm.keyMatches(b.recipient, link[1])) throw new Problem("key_mismatch", {}, "key_mismatch");
  const left = Math.max(0, Number(b.left) || 0);
  return { recipient: b.recipient, epoch: b.epoch, expires: Number(b.expires) || 0, left, maxParts: Math.max(1, Number(b.max_parts) || 1) };
}

function showBox() {
  say($("box-info"), "box_info", { date: new Date(box.expires * 1000), left: { bytes: box.left, mb: true, round: "floor" } });
  $("manual-seal").textContent = `age -r ${box.recipient} -o statement.age statement.txt`;
  $("manual-send").textContent = `curl --data-binary @statement.age ${location.origin}/v1/drop/${link[0]}`;
  $("manual").hidden = false;
}

// Nothing can be sent through this link: say why and stop.
function fatal(reason, key = reason, canRetry = false) {
  fatalReason = reason;
  pending = null;
  for (const id of ["drop-form", "result", "manual"]) $(id).hidden = true;
  say($("status"), null);
  say($("box-info"), null);
  say($("error"), key);
  $("reload").hidden = !canRetry;
  setState("refused", reason);
}

// A refusal the witness can act on: change the form, or try again.
function refuse(reason, key, vars) {
  say($("status"), null);
  say($("error"), key, vars);
  if (reason === "network") say($("send"), "retry");
  setState(reason ? "refused" : "ready", reason);
}

function failed(e, loading = false) {
  if (FATAL.includes(e.reason)) return fatal(e.reason);
  if (e instanceof NetError) return loading ? fatal("network", "network_load", true) : refuse("network", "network_send");
  if (e instanceof Problem) return refuse(e.reason, e.key, e.vars);
  if (loading) return fatal("network", "err_server", true);
  refuse(undefined, "err_server", { message: String(e.message || e) });
}

function succeed(id) {
  box.left = Math.max(0, box.left - pending.total);
  pending = null; // and the sealed bytes with it
  chosen = [];
  $("statement").value = "";
  renderFiles();
  showBox();
  $("reference").textContent = String(id).slice(0, 8);
  $("drop-form").hidden = $("progress-wrap").hidden = true;
  lastProgress = null;
  say($("status"), null);
  say($("error"), null);
  say($("send"), "send");
  $("result").hidden = false;
  $("result").focus();
  setState("sent");
}

// ---- the form ----------------------------------------------------------

const hasText = () => $("statement").value.trim() !== "";

function renderFiles() {
  const make = (tag, cls, text) => Object.assign(document.createElement(tag), { className: cls, textContent: text });
  $("file-list").replaceChildren(...chosen.map((f, i) => {
    const name = make("span", "name", f.name || "—");
    name.dir = "auto";
    const remove = make("button", "remove", t("remove"));
    remove.type = "button";
    remove.disabled = busy;
    remove.setAttribute("aria-label", t("remove_label", { name: f.name }));
    remove.addEventListener("click", () => {
      chosen.splice(i, 1);
      renderFiles();
      edited();
      $("files").focus();
    });
    const li = document.createElement("li");
    li.append(name, make("span", "size", size(f.size)), remove);
    return li;
  }));
  const total = chosen.reduce((s, f) => s + f.size, 0);
  say($("file-summary"), chosen.length ? "files_summary" : "files_none", { n: chosen.length, size: { bytes: total } });
}

// The sealed size of a part: an age header (~190 bytes with its nonce),
// the part's own header, and 16 bytes per 64 KiB of plaintext.
const sealedSize = (plain) => 250 + plain + 16 * Math.ceil((plain + 1) / 65536);

function estimate() {
  const label = (s) => Math.min(255, enc.encode(s).length);
  let total = hasText() ? sealedSize(45 + enc.encode($("statement").value).length) : 0;
  for (const f of chosen) total += sealedSize(20 + label(f.name) + label(f.type) + f.size);
  return total;
}

const tooBig = (total) =>
  new Problem("drop_box_full", { size: { bytes: total, mb: true, round: "ceil" }, left: { bytes: box.left, mb: true, round: "floor" } }, "drop_box_full");

function check() {
  const parts = (hasText() ? 1 : 0) + chosen.length;
  if (!parts) return new Problem("err_empty");
  if (parts > box.maxParts) return new Problem("err_too_many", { n: box.maxParts });
  const total = estimate();
  return total > box.left ? tooBig(total) : null;
}

// The form changed: what was sealed no longer matches it.
function edited() {
  if (busy || fatalReason || !box) return;
  pending = lastProgress = null;
  $("progress-wrap").hidden = true;
  say($("send"), "send");
  const problem = check();
  if (problem && problem.key !== "err_empty") say($("error"), problem.key, problem.vars);
  else say($("error"), null);
  setState("ready");
}

function lock(on) {
  busy = on;
  $("statement").readOnly = $("files").disabled = $("send").disabled = on;
  $("files-label").classList.toggle("disabled", on);
  for (const b of $("file-list").querySelectorAll("button")) b.disabled = on;
  // Keep a phone's screen on while it sends: a sleeping phone drops the upload.
  if (on) navigator.wakeLock?.request("screen").then((l) => (busy ? (wakeLock = l) : l.release()), () => {});
  else wakeLock?.release().catch(() => {}), (wakeLock = null);
}

function progress(done, total) {
  lastProgress = [done, total];
  $("progress-wrap").hidden = false;
  $("progress").max = total;
  $("progress").value = done;
  const ratio = total ? Math.floor((done / total) * 100) / 100 : 0;
  $("percent").textContent = new Intl.NumberFormat(lang, { style: "percent" }).format(ratio);
}

// ---- sealing -----------------------------------------------------------

async function seal() {
  const text = $("statement").value;
  const items = hasText() ? [null, ...chosen] : [...chosen];
  const length = wasm.chunkLength();
  const parts = [], chunks = new Map();
  let total = 0;
  for (const [i, file] of items.entries()) {
    say($("status"), "st_sealing", { i: i + 1, n: items.length });
    await pause(0.03); // let the status show before the work
    const unreadable = () => Promise.reject(new Problem("err_read", { name: file.name }));
    let data = file && new Uint8Array(await file.arrayBuffer().catch(unreadable));
    let sealed;
    try {
      sealed = file ? wasm.sealFile(box.recipient, link[1], file.name, file.type || "", data) : wasm.sealStatement(box.recipient, link[1], text);
    } catch (e) {
      if (e?.message === "key_mismatch") throw new Problem("key_mismatch", {}, "key_mismatch");
      throw new Problem("err_seal");
    }
    data = null;
    const ids = wasm.chunkIds(sealed);
    ids.forEach((id, k) => chunks.set(id, sealed.subarray(k * length, (k + 1) * length)));
    parts.push({ size: sealed.length, chunks: ids });
    total += sealed.length;
  }
  const upload = [...chunks.values()].reduce((s, c) => s + c.length, 0);
  return { epoch: box.epoch, parts, chunks, total, upload, id: null, progressed: false };
}

// ---- the network -------------------------------------------------------

function answer(status, text, retryAfter) {
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status, json: json && typeof json === "object" ? json : {}, retryAfter };
}

async function api(method, path, body) {
  try {
    const headers = body ? { "Content-Type": "application/json" } : undefined;
    const res = await fetch(`/v1/drop/${link[0]}${path}`, { method, body, headers, cache: "no-store", credentials: "omit", signal: AbortSignal.timeout(60_000) });
    return answer(res.status, await res.text(), res.headers.get("Retry-After"));
  } catch {
    throw new NetError();
  }
}

// One chunk, reporting the bytes sent so far as they go.
function putChunk(id, bytes, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    let stall = 0;
    const arm = () => (clearTimeout(stall), (stall = setTimeout(() => x.abort(), STALL_MS)));
    x.open("PUT", `/v1/drop/${link[0]}/chunks/${id}`);
    x.setRequestHeader("Content-Type", "application/octet-stream");
    x.upload.onprogress = (e) => (arm(), onProgress(Math.min(e.loaded, bytes.length)));
    x.onload = () => (clearTimeout(stall), resolve(answer(x.status, x.responseText, x.getResponseHeader("Retry-After"))));
    x.onerror = x.onabort = x.ontimeout = () => (clearTimeout(stall), reject(new NetError()));
    arm();
    x.send(bytes);
  });
}

// At once when online; otherwise once the connection is back (then true).
async function connection() {
  if (navigator.onLine) return false;
  say($("status"), "st_offline");
  await new Promise((r) => addEventListener("online", r, { once: true }));
  return true;
}

// `call` again after a network error, a 5xx or a 429 (after its Retry-After),
// with growing pauses; a NetError after `tries` attempts. With `resumable`, a
// connection lost meanwhile sends the caller back to declare the parts again.
async function persist(call, tries, key, resumable = false) {
  for (let attempt = 1, delay = 2; ; attempt++, delay = Math.min(delay * 2, 30)) {
    if ((await connection()) && resumable) throw new Redeclare();
    say($("status"), key);
    let r = null;
    try {
      r = await call();
    } catch (e) {
      if (!(e instanceof NetError)) throw e;
    }
    if (r && !TRANSIENT.includes(r.status)) return r;
    if (attempt >= tries) throw new NetError();
    const busyServer = r?.status === 429;
    const wait = busyServer ? Math.min(300, Math.max(1, parseInt(r.retryAfter, 10) || delay)) : delay;
    say($("status"), busyServer ? "st_busy" : "st_retry", { n: wait });
    await pause(wait);
  }
}

async function upload(p, missing) {
  const todo = [...new Set(missing)].filter((id) => p.chunks.has(id));
  let done = p.upload - todo.reduce((s, id) => s + p.chunks.get(id).length, 0);
  progress(done, p.upload);
  for (const id of todo) {
    const bytes = p.chunks.get(id);
    const r = await persist(() => putChunk(id, bytes, (n) => progress(done + n, p.upload)), 4, "st_sending", true);
    if (r.status === 404 && !r.json.reason) throw new Redeclare(); // the declaration lapsed
    if (r.status !== 200 && r.status !== 201) throw new Refusal(r);
    done += bytes.length;
    p.progressed = true;
    progress(done, p.upload);
  }
}

// Declares the parts, uploads what the server lacks and completes. After a
// lost connection the same declaration again tells what is still missing.
async function deliver(p) {
  const declaration = JSON.stringify({ epoch: p.epoch, parts: p.parts });
  let missing = null, failures = 0;
  for (let round = 0; round < 100; round++) {
    try {
      if (!missing) {
        const r = await persist(() => api("POST", "/submissions", declaration), 6, "st_declaring");
        if ((r.status !== 200 && r.status !== 201) || !/^[0-9a-f]{32}$/.test(r.json.id)) throw new Refusal(r);
        p.id = r.json.id;
        missing = Array.isArray(r.json.missing) ? r.json.missing : [];
      }
      await upload(p, missing);
      const d = await persist(() => api("POST", `/submissions/${p.id}/done`), 6, "st_finishing");
      if (d.status === 200) return p.id;
      if (d.status === 409 && Array.isArray(d.json.missing)) missing = d.json.missing;
      else if (d.status === 404 && !d.json.reason) missing = null;
      else throw new Refusal(d);
    } catch (e) {
      if (e instanceof Redeclare) {
        missing = null;
        continue;
      }
      if (!(e instanceof NetError)) throw e;
      if (p.progressed) failures = 0;
      p.progressed = false;
      if (++failures > 3) throw e;
      missing = null;
      say($("status"), "st_retry", { n: 5 * failures });
      await pause(5 * failures);
    }
  }
  throw new NetError();
}

async function send(event) {
  event?.preventDefault();
  if (busy || !box || fatalReason) return;
  lock(true);
  say($("error"), null);
  setState("sending");
  try {
    for (let round = 0; ; round++) {
      try {
        if (!pending) {
          const problem = check();
          if (problem) throw problem;
          pending = await seal();
          if (pending.total > box.left) {
            const total = pending.total;
            pending = null;
            throw tooBig(total);
          }
        }
        return succeed(await deliver(pending));
      } catch (e) {
        if (e.reason !== "drop_box_key_changed" || round > 0) throw e;
        // The space changed its key: read it again (it must still be the
        // one the link pins) and seal once more to it.
        pending = null;
        say($("status"), "st_key_changed");
        box = await loadBox();
        showBox();
      }
    }
  } catch (e) {
    if (e instanceof Refusal && e.reason === "drop_box_full") {
      const total = pending?.total ?? estimate();
      pending = null;
      const fresh = await loadBox().catch((e2) => e2);
      if (fresh instanceof Error) return failed(fresh);
      box = fresh;
      showBox();
      e = tooBig(total);
    }
    if (e.reason === "drop_box_full" && box.left < MIN_LEFT) return fatal("drop_box_full", "box_full_now");
    if (!pending) {
      $("progress-wrap").hidden = true;
      lastProgress = null;
    }
    failed(e);
  } finally {
    lock(false);
  }
}

// ---- wiring ------------------------------------------------------------

$("language").addEventListener("change", (e) => setLanguage(e.target.value));
$("drop-form").addEventListener("submit", send);
$("statement").addEventListener("input", edited);
$("files").addEventListener("change", () => {
  const same = (a, b) => a.name === b.name && a.size === b.size && a.lastModified === b.lastModified;
  for (const f of $("files").files) if (!chosen.some((c) => same(c, f))) chosen.push(f);
  $("files").value = "";
  renderFiles();
  edited();
});
$("again").addEventListener("click", () => {
  $("result").hidden = true;
  if (box.left < MIN_LEFT) return fatal("drop_box_full", "box_full_now");
  $("drop-form").hidden = false;
  setState("ready");
  $("statement").focus();
});
$("reload").addEventListener("click", () => location.reload());
addEventListener("hashchange", () => location.reload());
// Back online after a failed attempt: go on with what was already sealed.
addEventListener("online", () => {
  if (pending && !busy && document.body.dataset.reason === "network") send();
});
addEventListener("beforeunload", (e) => {
  if (busy) e.preventDefault();
});

start();
