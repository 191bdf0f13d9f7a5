// UI strings in English and Simplified Chinese.
//
// A value is either a string or {one, other} for English plurals (chosen by
// the `n` variable). `{name}` placeholders are filled from the variables.
// Every string ends up in the page through textContent, never as HTML.

const STRINGS = {
  en: {
    'doc.title': 'imgcls — image classifier',
    'brand.tagline': 'Image classifier',
    'badge.offline': 'Offline',
    'badge.offline.title': 'Runs entirely on this server — nothing is sent to the internet.',
    'status.checking': 'Checking server…',
    'status.ready': 'Ready',
    'status.warming': 'Warming up',
    'status.down': 'Server unreachable',
    'nav.docs': 'API docs',
    'lang.toggle': '中文',
    'lang.toggle.aria': 'Switch to Chinese (切换到中文)',

    'controls.label': 'Classification settings',
    'controls.model': 'Model',
    'controls.precision': 'Precision',
    'controls.topk': 'Results per image',
    'model.loading': 'Loading models…',
    'model.default': 'Server default',
    'model.classes': '{n} classes',
    'model.loadsOnUse': 'loads on first use',
    'model.langs': 'labels: {langs}',
    'model.langFallback': 'This model has no Chinese labels — English is shown instead.',
    'precision.fp32': 'FP32 · full',
    'precision.fp16': 'FP16 · half',
    'precision.int8': 'INT8 · faster',
    'lang.name.en': 'English',
    'lang.name.zh': '中文',

    'drop.title': 'Drop images here or choose files',
    'drop.hint': 'Common image formats · pick several at once · paste works too',
    'drop.active': 'Release to add the images',

    'action.classify': { one: 'Classify {n} image', other: 'Classify {n} images' },
    'action.classifyIdle': 'Classify',
    'action.classifying': 'Classifying…',
    'action.cancel': 'Cancel',
    'action.clear': 'Clear all',
    'action.exportCsv': 'Export CSV',
    'action.exportJson': 'Export JSON',
    'action.dismiss': 'Dismiss',
    'action.retry': 'Try again',

    'progress.running': 'Classifying {done} of {total}…',
    'progress.done': 'Done — {ok} classified, {failed} failed',
    'progress.cancelled': 'Stopped — {done} of {total} classified',
    'summary.count': { one: '{n} image', other: '{n} images' },
    'summary.ok': '{n} classified',
    'summary.failed': '{n} failed',
    'summary.pending': '{n} waiting',
    'results.heading': 'Results',
    'results.empty': 'Add some images and their top labels will appear here.',
    'announce.added': { one: '{n} image added', other: '{n} images added' },

    'card.pending': 'Ready to classify',
    'card.working': 'Classifying…',
    'card.remove': 'Remove {name}',
    'card.noPreview': 'No preview',
    'card.latency': '{ms} ms',
    'card.timing': 'decode {decode} ms · queue {queue} ms · model {model} ms · total {total} ms',
    'card.langFallback': 'English labels — this model has no Chinese names',
    'card.topLabel': 'Top {n} labels',
    'card.inputReport': 'Input',
    'card.stale': 'Settings changed — classify again to update',
    'card.waiting': 'Waiting…',
    'input.summary': '{format} · {width}×{height} · {size}',
    'input.rotatedExif': 'Rotated upright per EXIF (orientation {n})',
    'input.rotated': 'Rotated upright per EXIF',
    'input.convertedFrom': 'Converted from {mode}',
    'input.alpha': 'Transparency flattened onto white',
    'input.firstFrame': 'Used the first frame of an animation',
    'input.bitDepth': 'Reduced from 16-bit to 8-bit',
    'input.draft': 'Large photo: decoded at 1/{n} size (faster; still over twice what the model sees)',
    'input.inverted': 'Inverted Adobe CMYK corrected',
    'input.none': 'Used as is',
    'mode.P': 'palette colours',
    'mode.PA': 'palette colours with transparency',
    'mode.L': 'greyscale',
    'mode.LA': 'greyscale with transparency',
    'mode.RGBA': 'RGBA (with transparency)',
    'mode.1': 'black and white',
    'mode.I;16': '16-bit greyscale',
    'mode.I': '32-bit greyscale',
    'mode.F': 'floating-point greyscale',

    'error.empty_file': 'This file is empty.',
    'error.unsupported_media_type': 'Not a supported image type.',
    'error.corrupt_image': 'The image is damaged or incomplete and could not be read.',
    'error.image_too_large': 'The image has too many pixels to process.',
    'error.payload_too_large': 'The file is too large to upload.',
    'error.tooLargeLimit': 'The file is too large to upload ({size}; this server accepts up to {limit}).',
    'error.bad_request': 'The server could not understand this upload.',
    'error.unknown_model': 'The selected model is not available on this server.',
    'error.overloaded': 'The server was too busy to take this image. Try again.',
    'error.unauthorized': 'An API key is required.',
    'error.not_ready': 'The model is still loading. Try again shortly.',
    'error.generic': 'This image could not be classified (error {status}).',
    'error.noResult': 'The server returned no result for this image.',
    'error.upload_failed': 'The upload was cut off — the file may be larger than the server accepts.',

    'banner.tooLarge': 'The upload was larger than the server accepts. Try fewer or smaller images.',
    'banner.busy': 'The server is busy. Retrying in {s} s…',
    'banner.notReady': 'The model is still warming up. Retrying in {s} s…',
    'banner.busyGaveUp': 'The server is still busy. Please try again in a moment.',
    'banner.unauthorized': 'This server needs an API key.',
    'banner.keyRejected': 'That API key was not accepted. Check it and try again.',
    'banner.network': 'Can’t reach the imgcls server. Check that it is running, then try again.',
    'banner.modelsFailed': 'Couldn’t load the model list, so the server’s default model will be used.',
    'banner.unknownModel': 'The selected model is not available on this server. Pick another one.',
    'banner.generic': 'The server answered with an error ({status}). Please try again.',
    'banner.keySaved': 'API key saved in this browser.',
    'banner.keyForgotten': 'API key removed from this browser.',
    'key.label': 'API key',
    'key.save': 'Save key',
    'key.forget': 'Forget API key',

    'camera.start': 'Live camera',
    'camera.stop': 'Stop camera',
    'camera.heading': 'Live camera',
    'camera.starting': 'Starting the camera…',
    'camera.waiting': 'Point the camera at something…',
    'camera.latency': '{ms} ms per frame',
    'camera.frameError': 'Last frame failed: {reason}',
    'camera.insecure': 'The camera only works over HTTPS or on localhost. Open imgcls at http://127.0.0.1 or behind HTTPS.',
    'camera.unsupported': 'This browser does not support camera access.',
    'camera.denied': 'Camera permission was denied. Allow camera access for this site in the browser settings, then try again.',
    'camera.notFound': 'No camera was found on this device.',
    'camera.busy': 'The camera is in use by another app or could not be started.',
    'camera.failed': 'The camera could not be started.',

    'export.fileStem': 'imgcls-results',
    'skip': 'Skip to content',
    'footer.privacy': 'Images are sent only to this imgcls server and classified on its CPU.',
  },

  zh: {
    'doc.title': 'imgcls — 图像分类',
    'brand.tagline': '图像分类',
    'badge.offline': '离线',
    'badge.offline.title': '全部在本服务器上运行，不会向互联网发送任何数据。',
    'status.checking': '正在检查服务器…',
    'status.ready': '就绪',
    'status.warming': '正在预热',
    'status.down': '无法连接服务器',
    'nav.docs': 'API 文档',
    'lang.toggle': 'EN',
    'lang.toggle.aria': '切换到英文 (Switch to English)',

    'controls.label': '识别设置',
    'controls.model': '模型',
    'controls.precision': '精度',
    'controls.topk': '每张图结果数',
    'model.loading': '正在加载模型…',
    'model.default': '服务器默认',
    'model.classes': '{n} 个类别',
    'model.loadsOnUse': '首次使用时加载',
    'model.langs': '标签：{langs}',
    'model.langFallback': '此模型没有中文标签，将显示英文标签。',
    'precision.fp32': 'FP32 · 全精度',
    'precision.fp16': 'FP16 · 半精度',
    'precision.int8': 'INT8 · 更快',
    'lang.name.en': 'English',
    'lang.name.zh': '中文',

    'drop.title': '将图片拖放到这里，或选择文件',
    'drop.hint': '支持常见图片格式 · 可多选 · 可直接粘贴',
    'drop.active': '松开即可添加图片',

    'action.classify': '识别 {n} 张图片',
    'action.classifyIdle': '开始识别',
    'action.classifying': '正在识别…',
    'action.cancel': '取消',
    'action.clear': '全部清除',
    'action.exportCsv': '导出 CSV',
    'action.exportJson': '导出 JSON',
    'action.dismiss': '关闭',
    'action.retry': '重试',

    'progress.running': '正在识别 {done} / {total}…',
    'progress.done': '完成：成功 {ok} 张，失败 {failed} 张',
    'progress.cancelled': '已停止：已识别 {done} / {total} 张',
    'summary.count': '共 {n} 张',
    'summary.ok': '成功 {n} 张',
    'summary.failed': '失败 {n} 张',
    'summary.pending': '待识别 {n} 张',
    'results.heading': '识别结果',
    'results.empty': '添加图片后，识别结果会显示在这里。',
    'announce.added': '已添加 {n} 张图片',

    'card.pending': '等待识别',
    'card.working': '识别中…',
    'card.remove': '移除 {name}',
    'card.noPreview': '无法预览',
    'card.latency': '{ms} 毫秒',
    'card.timing': '解码 {decode} 毫秒 · 排队 {queue} 毫秒 · 模型 {model} 毫秒 · 合计 {total} 毫秒',
    'card.langFallback': '此模型没有中文标签，显示英文',
    'card.topLabel': '前 {n} 个标签',
    'card.inputReport': '输入',
    'card.stale': '设置已更改，重新识别即可更新',
    'card.waiting': '排队中…',
    'input.summary': '{format} · {width}×{height} · {size}',
    'input.rotatedExif': '已按 EXIF 方向信息转正（方向 {n}）',
    'input.rotated': '已按 EXIF 方向信息转正',
    'input.convertedFrom': '已从 {mode} 转换',
    'input.alpha': '透明区域已填充为白色',
    'input.firstFrame': '使用了动画的第一帧',
    'input.bitDepth': '已从 16 位降为 8 位',
    'input.draft': '大尺寸照片：按 1/{n} 尺寸解码（更快，仍超过模型输入的两倍）',
    'input.inverted': '已校正 Adobe 反相 CMYK',
    'input.none': '未做转换',
    'mode.P': '调色板颜色',
    'mode.PA': '带透明的调色板颜色',
    'mode.L': '灰度',
    'mode.LA': '带透明的灰度',
    'mode.RGBA': 'RGBA（含透明）',
    'mode.1': '黑白',
    'mode.I;16': '16 位灰度',
    'mode.I': '32 位灰度',
    'mode.F': '浮点灰度',

    'error.empty_file': '文件是空的。',
    'error.unsupported_media_type': '不是受支持的图片格式。',
    'error.corrupt_image': '图片已损坏或不完整，无法读取。',
    'error.image_too_large': '图片像素过多，无法处理。',
    'error.payload_too_large': '文件太大，无法上传。',
    'error.tooLargeLimit': '文件太大，无法上传（{size}，此服务器最多接受 {limit}）。',
    'error.bad_request': '服务器无法理解这次上传。',
    'error.unknown_model': '服务器上没有所选的模型。',
    'error.overloaded': '服务器太忙，未能处理这张图片，请重试。',
    'error.unauthorized': '需要 API 密钥。',
    'error.not_ready': '模型仍在加载，请稍后重试。',
    'error.generic': '无法识别这张图片（错误 {status}）。',
    'error.noResult': '服务器没有返回这张图片的结果。',
    'error.upload_failed': '上传被中断，文件可能超过了服务器的大小限制。',

    'banner.tooLarge': '上传内容超过了服务器的限制，请减少图片数量或使用更小的图片。',
    'banner.busy': '服务器繁忙，{s} 秒后自动重试…',
    'banner.notReady': '模型仍在预热，{s} 秒后自动重试…',
    'banner.busyGaveUp': '服务器仍然繁忙，请稍后再试。',
    'banner.unauthorized': '此服务器需要 API 密钥。',
    'banner.keyRejected': 'API 密钥无效，请检查后重试。',
    'banner.network': '无法连接 imgcls 服务器。请确认服务正在运行，然后重试。',
    'banner.modelsFailed': '无法加载模型列表，将使用服务器的默认模型。',
    'banner.unknownModel': '服务器上没有所选的模型，请选择其他模型。',
    'banner.generic': '服务器返回错误（{status}），请重试。',
    'banner.keySaved': 'API 密钥已保存在此浏览器中。',
    'banner.keyForgotten': '已从此浏览器中删除 API 密钥。',
    'key.label': 'API 密钥',
    'key.save': '保存密钥',
    'key.forget': '删除 API 密钥',

    'camera.start': '实时摄像头',
    'camera.stop': '关闭摄像头',
    'camera.heading': '实时摄像头',
    'camera.starting': '正在启动摄像头…',
    'camera.waiting': '将摄像头对准要识别的物体…',
    'camera.latency': '每帧 {ms} 毫秒',
    'camera.frameError': '上一帧识别失败：{reason}',
    'camera.insecure': '摄像头只能在 HTTPS 或 localhost 下使用。请通过 http://127.0.0.1 或 HTTPS 打开 imgcls。',
    'camera.unsupported': '此浏览器不支持访问摄像头。',
    'camera.denied': '摄像头权限被拒绝。请在浏览器设置中允许此网站使用摄像头，然后重试。',
    'camera.notFound': '此设备上没有找到摄像头。',
    'camera.busy': '摄像头正被其他应用占用，或无法启动。',
    'camera.failed': '无法启动摄像头。',

    'export.fileStem': 'imgcls-results',
    'skip': '跳到主要内容',
    'footer.privacy': '图片只会发送到本 imgcls 服务器，并在其 CPU 上完成识别。',
  },
};

export const LANGS = ['en', 'zh'];
const STORAGE_KEY = 'imgcls.lang';
let current = initialLang();

function initialLang() {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (LANGS.includes(saved)) return saved;
  } catch { /* storage may be disabled */ }
  const nav = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
  return nav.toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

/** The current UI language code: "en" or "zh". */
export function getLang() {
  return current;
}

/** Switch the UI language and remember it. Callers re-render afterwards. */
export function setLang(lang) {
  if (!LANGS.includes(lang)) return;
  current = lang;
  try { localStorage.setItem(STORAGE_KEY, lang); } catch { /* ignore */ }
  document.documentElement.lang = htmlLang(lang);
}

/** BCP 47 tag for a label language, for `lang` attributes (picks CJK glyphs). */
export function htmlLang(lang) {
  return lang === 'zh' ? 'zh-CN' : 'en';
}

/** True when the current language has a string for `key`. */
export function has(key) {
  return key in STRINGS[current] || key in STRINGS.en;
}

/**
 * Translate `key` into the current language.
 *
 * Args: key — a key of STRINGS; vars — values for `{name}` placeholders.
 * Returns: the string; an unknown key comes back as itself so gaps are visible.
 */
export function t(key, vars = {}) {
  let s = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  if (typeof s === 'object') s = vars.n === 1 ? s.one : s.other;
  return s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Fill every element carrying data-i18n / data-i18n-* attributes under `root`. */
export function translateDom(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const attr of ['title', 'aria-label', 'placeholder']) {
    const data = `i18n${attr.replace(/(^|-)(\w)/g, (m, d, c) => c.toUpperCase())}`;
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) {
      el.setAttribute(attr, t(el.dataset[data]));
    }
  }
  document.title = t('doc.title');
}
