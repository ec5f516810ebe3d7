"use strict";(self.rspackChunkndustria_labextension=self.rspackChunkndustria_labextension||[]).push([[817],{475(r,o,t){var a=t(601),e=t.n(a),n=t(314),i=(t.n(n))()(e());i.push([r.id,`/* The ndustria sidebar; JupyterLab's CSS variables keep it right in light and dark themes. */
.jp-ndustria-panel {
  display: flex;
  flex-direction: column;
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size1);
  overflow: auto;
  min-width: 240px;
}

.jp-ndustria-toolbar {
  display: flex;
  gap: 4px;
  padding: 6px 8px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.jp-ndustria-toolbar button {
  background: none;
  border: none;
  border-bottom: 2px solid transparent;
  color: var(--jp-ui-font-color1);
  cursor: pointer;
  font-size: var(--jp-ui-font-size1);
  padding: 2px 8px;
}

.jp-ndustria-toolbar button.jp-mod-active {
  border-bottom-color: var(--jp-brand-color1);
  font-weight: 600;
}

.jp-ndustria-toolbar .jp-ndustria-refresh {
  margin-left: auto;
}

.jp-ndustria-status {
  color: var(--jp-error-color1);
  padding: 0 8px;
}

.jp-ndustria-status:empty {
  display: none;
}

.jp-ndustria-body {
  padding: 4px 0;
}

.jp-ndustria-empty {
  color: var(--jp-ui-font-color2);
  padding: 0 8px;
}

.jp-ndustria-runs {
  max-height: 40vh;
  overflow: auto;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.jp-ndustria-run {
  cursor: pointer;
  padding: 4px 8px;
  border-left: 3px solid transparent;
}

.jp-ndustria-run:hover {
  background: var(--jp-layout-color2);
}

.jp-ndustria-run.jp-mod-selected {
  background: var(--jp-layout-color2);
  border-left-color: var(--jp-brand-color1);
}

.jp-ndustria-name {
  font-weight: 600;
  margin-right: 6px;
}

.jp-ndustria-meta {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  padding: 1px 0;
}

.jp-ndustria-body > .jp-ndustria-meta {
  padding: 4px 8px;
}

.jp-ndustria-section h3 {
  font-size: var(--jp-ui-font-size1);
  margin: 8px 8px 4px;
}

.jp-ndustria-table {
  border-collapse: collapse;
  width: 100%;
}

.jp-ndustria-table th {
  color: var(--jp-ui-font-color2);
  font-weight: normal;
  text-align: left;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.jp-ndustria-table th,
.jp-ndustria-table td {
  padding: 2px 6px;
  white-space: nowrap;
}

.jp-ndustria-table .jp-ndustria-task-name {
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
  max-width: 180px;
  overflow: hidden;
  text-overflow: ellipsis;
}

.jp-ndustria-num {
  text-align: right;
}

.jp-ndustria-error {
  color: var(--jp-error-color1);
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-ui-font-size0);
  white-space: normal !important;
}

.jp-ndustria-badge {
  border-radius: 8px;
  color: var(--jp-ui-inverse-font-color1);
  font-size: var(--jp-ui-font-size0);
  padding: 0 6px;
  background: var(--jp-layout-color4);
}

.jp-ndustria-done {
  background: var(--jp-success-color1);
}

.jp-ndustria-failed,
.jp-ndustria-interrupted {
  background: var(--jp-error-color1);
}

.jp-ndustria-skipped {
  background: var(--jp-warn-color1);
}

.jp-ndustria-running {
  background: var(--jp-brand-color1);
}

.jp-ndustria-cached {
  background: var(--jp-info-color1);
}

.jp-ndustria-queued {
  background: var(--jp-layout-color3);
  color: var(--jp-ui-font-color1);
}

.jp-ndustria-delete {
  background: none;
  border: none;
  color: var(--jp-ui-font-color2);
  cursor: pointer;
}

.jp-ndustria-delete:hover {
  color: var(--jp-error-color1);
}
`,""]),t.d(o,{},{A:i})},33(r,o,t){var a=t(601),e=t.n(a),n=t(314),i=(t.n(n))()(e());i.push([r.id,`/* Cell state markers, the cache selector and the task graph (issue 17). JupyterLab's variables only. */
.jp-Cell.jp-ndustria-marked {
  position: relative;
}

.jp-ndustria-cellstate {
  position: absolute;
  left: 4px;
  top: 28px;
  z-index: 2;
  max-width: calc(var(--jp-cell-prompt-width, 64px) - 8px);
  padding: 0 5px;
  border-radius: 8px;
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size0);
  line-height: 16px;
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
  cursor: help;
  color: var(--jp-ui-inverse-font-color1);
  background: var(--jp-layout-color4);
}

.jp-ndustria-cellstate[data-state='cached'] {
  background: var(--jp-success-color1);
}

.jp-ndustria-cellstate[data-state='stale'] {
  background: var(--jp-warn-color1);
}

.jp-ndustria-cellstate[data-state='failed'] {
  background: var(--jp-error-color1);
}

.jp-ndustria-cellstate[data-state='running'] {
  background: var(--jp-brand-color1);
}

.jp-ndustria-cellstate[data-state='never run'],
.jp-ndustria-cellstate[data-state='unknown'],
.jp-ndustria-cellstate[data-state='uncacheable'] {
  background: var(--jp-layout-color3);
  color: var(--jp-ui-font-color1);
}

.jp-ndustria-caches {
  display: flex;
  flex-wrap: wrap;
  align-items: center;
  gap: 4px;
  padding: 4px 8px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.jp-ndustria-cache-select {
  flex: 1;
  min-width: 0;
  font-size: var(--jp-ui-font-size0);
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1);
  border: var(--jp-border-width) solid var(--jp-border-color1);
}

.jp-ndustria-cache-note {
  flex-basis: 100%;
}

.jp-ndustria-cache-note:empty {
  display: none;
}

.jp-ndustria-graph h3 {
  font-size: var(--jp-ui-font-size1);
  margin: 8px 8px 4px;
}

.jp-ndustria-graph-box {
  padding: 0 8px;
  overflow: auto;
  max-height: 60vh;
}

.jp-ndustria-graph > .jp-ndustria-meta {
  padding: 2px 8px;
}

.jp-ndustria-edge {
  fill: none;
  stroke: var(--jp-border-color1);
  stroke-width: 1.5;
}

.jp-ndustria-arrowhead {
  fill: var(--jp-border-color1);
}

.jp-ndustria-node rect {
  fill: var(--jp-layout-color2);
  stroke: var(--jp-border-color1);
  stroke-width: 1;
}

.jp-ndustria-node-done rect {
  fill: var(--jp-success-color3, var(--jp-layout-color2));
  stroke: var(--jp-success-color1);
}

.jp-ndustria-node-cached rect {
  fill: var(--jp-info-color3, var(--jp-layout-color2));
  stroke: var(--jp-info-color1);
}

.jp-ndustria-node-failed rect {
  fill: var(--jp-error-color3, var(--jp-layout-color2));
  stroke: var(--jp-error-color1);
  stroke-width: 2;
}

.jp-ndustria-node-running rect {
  stroke: var(--jp-brand-color1);
  stroke-width: 2;
}

.jp-ndustria-node text {
  fill: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family);
}

.jp-ndustria-node-name {
  font-size: 11px;
  font-weight: 600;
}

.jp-ndustria-node-detail {
  font-size: 10px;
  fill: var(--jp-ui-font-color2) !important;
}
`,""]),t.d(o,{},{A:i})},314(r){r.exports=function(r){var o=[];return o.toString=function(){return this.map(function(o){var t="",a=void 0!==o[5];return o[4]&&(t+="@supports (".concat(o[4],") {")),o[2]&&(t+="@media ".concat(o[2]," {")),a&&(t+="@layer".concat(o[5].length>0?" ".concat(o[5]):""," {")),t+=r(o),a&&(t+="}"),o[2]&&(t+="}"),o[4]&&(t+="}"),t}).join("")},o.i=function(r,t,a,e,n){"string"==typeof r&&(r=[[null,r,void 0]]);var i={};if(a)for(var p=0;p<this.length;p++){var s=this[p][0];null!=s&&(i[s]=!0)}for(var d=0;d<r.length;d++){var l=[].concat(r[d]);a&&i[l[0]]||(void 0!==n&&(void 0===l[5]||(l[1]="@layer".concat(l[5].length>0?" ".concat(l[5]):""," {").concat(l[1],"}")),l[5]=n),t&&(l[2]&&(l[1]="@media ".concat(l[2]," {").concat(l[1],"}")),l[2]=t),e&&(l[4]?(l[1]="@supports (".concat(l[4],") {").concat(l[1],"}"),l[4]=e):l[4]="".concat(e)),o.push(l))}},o}},601(r){r.exports=function(r){return r[1]}},72(r){var o=[];function t(r){for(var t=-1,a=0;a<o.length;a++)if(o[a].identifier===r){t=a;break}return t}function a(r,a){for(var e={},n=[],i=0;i<r.length;i++){var p=r[i],s=a.base?p[0]+a.base:p[0],d=e[s]||0,l="".concat(s," ").concat(d);e[s]=d+1;var c=t(l),u={css:p[1],media:p[2],sourceMap:p[3],supports:p[4],layer:p[5]};if(-1!==c)o[c].references++,o[c].updater(u);else{var f=function(r,o){var t=o.domAPI(o);return t.update(r),function(o){o?(o.css!==r.css||o.media!==r.media||o.sourceMap!==r.sourceMap||o.supports!==r.supports||o.layer!==r.layer)&&t.update(r=o):t.remove()}}(u,a);a.byIndex=i,o.splice(i,0,{identifier:l,updater:f,references:1})}n.push(l)}return n}r.exports=function(r,e){var n=a(r=r||[],e=e||{});return function(r){r=r||[];for(var i=0;i<n.length;i++){var p=t(n[i]);o[p].references--}for(var s=a(r,e),d=0;d<n.length;d++){var l=t(n[d]);0===o[l].references&&(o[l].updater(),o.splice(l,1))}n=s}}},659(r){var o={};r.exports=function(r,t){var a=function(r){if(void 0===o[r]){var t=document.querySelector(r);if(window.HTMLIFrameElement&&t instanceof window.HTMLIFrameElement)try{t=t.contentDocument.head}catch(r){t=null}o[r]=t}return o[r]}(r);if(!a)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");a.appendChild(t)}},540(r){r.exports=function(r){var o=document.createElement("style");return r.setAttributes(o,r.attributes),r.insert(o,r.options),o}},56(r,o,t){r.exports=function(r){var o=t.nc;o&&r.setAttribute("nonce",o)}},825(r){r.exports=function(r){if("u"<typeof document)return{update:function(){},remove:function(){}};var o=r.insertStyleElement(r);return{update:function(t){var a,e,n;a="",t.supports&&(a+="@supports (".concat(t.supports,") {")),t.media&&(a+="@media ".concat(t.media," {")),(e=void 0!==t.layer)&&(a+="@layer".concat(t.layer.length>0?" ".concat(t.layer):""," {")),a+=t.css,e&&(a+="}"),t.media&&(a+="}"),t.supports&&(a+="}"),(n=t.sourceMap)&&"u">typeof btoa&&(a+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(n))))," */")),r.styleTagTransform(a,o,r.options)},remove:function(){var r;null===(r=o).parentNode||r.parentNode.removeChild(r)}}}},113(r){r.exports=function(r,o){if(o.styleSheet)o.styleSheet.cssText=r;else{for(;o.firstChild;)o.removeChild(o.firstChild);o.appendChild(document.createTextNode(r))}}},192(r,o,t){var a=t(72),e=t.n(a),n=t(825),i=t.n(n),p=t(659),s=t.n(p),d=t(56),l=t.n(d),c=t(540),u=t.n(c),f=t(113),j=t.n(f),v=t(475),b={};b.styleTagTransform=j(),b.setAttributes=l(),b.insert=s().bind(null,"head"),b.domAPI=i(),b.insertStyleElement=u(),e()(v.A,b),v.A&&v.A.locals&&v.A.locals;var h=t(33),m={};m.styleTagTransform=j(),m.setAttributes=l(),m.insert=s().bind(null,"head"),m.domAPI=i(),m.insertStyleElement=u(),e()(h.A,m),h.A&&h.A.locals&&h.A.locals}}]);