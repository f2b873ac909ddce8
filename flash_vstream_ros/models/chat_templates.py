"""Chat templates of the llava-hf hub repos (their ``chat_template.json``), as data.

The tiny LLaVA checkpoints carry these so that the tests check our prompt ids against what the
real processors produce (``processor.apply_chat_template`` + the tokenizer, BOS included):

* ``LLAVA_15``: llava-hf/llava-1.5-7b-hf (also llava-v1.6-vicuna): ``USER: <image>\\n{text}
  ASSISTANT:``; no BOS in the template, the tokenizer adds it;
* ``ONEVISION``: llava-hf/llava-onevision-qwen2-*-ov-hf: ``<|im_start|>user <image>\\n{text}
  <|im_end|><|im_start|>assistant\\n`` (Qwen2 has no BOS);
* ``INTERLEAVE``: llava-hf/llava-interleave-qwen-*-hf: ``<|im_start|>user\\n<image>\\n{text}
  <|im_end|>\\n<|im_start|>assistant\\n``.
"""

from __future__ import annotations

LLAVA_15 = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    '{# Render all images first #}'
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    '{# Render all text next #}'
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    '{% else %}'
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}"
    '{% endif %}{% endfor %}'
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
ONEVISION = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    '{# Render all images first #}'
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}"
    '{# Render all video then #}'
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}"
    '{# Render all text next #}'
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}"
    '{% else %}'
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}"
    "{% endif %}{{'<|im_end|>'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
INTERLEAVE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    '{# Render all images first #}'
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}"
    '{# Render all text next #}'
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}"
    '{% else %}'
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}"
    "{% endif %}{{'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The prompt each template renders for one image and ``text`` (the model cards' formats).
DOCUMENTED = {
    'llava-1.5': 'USER: <image>\n{text} ASSISTANT:',
    'onevision': '<|im_start|>user <image>\n{text}<|im_end|><|im_start|>assistant\n',
    'interleave': '<|im_start|>user\n<image>\n{text}<|im_end|>\n<|im_start|>assistant\n',
}
TEMPLATES = {'llava-1.5': LLAVA_15, 'onevision': ONEVISION, 'interleave': INTERLEAVE}
# Qwen/Qwen2-VL-*-Instruct and Qwen2.5-VL-*-Instruct (their chat_template.json; the tokens of a
# video are <|vision_start|><|video_pad|><|vision_end|>, a default system prompt when absent).
QWEN2_VL = (
    '{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}'
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}'
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    '{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture '
    '{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>'
    "{% elif content['type'] == 'video' or 'video' in content %}"
    '{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video '
    '{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>'
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    '{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}'
)
