"use strict";(self.rspackChunkndustria_labextension=self.rspackChunkndustria_labextension||[]).push([[232],{475(r,o,t){var e=t(601),n=t.n(e),a=t(314),i=(t.n(a))()(n());i.push([r.id,`/* The ndustria sidebar; JupyterLab's CSS variables keep it right in light and dark themes. */
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
`,""]),t.d(o,{},{A:i})},314(r){r.exports=function(r){var o=[];return o.toString=function(){return this.map(function(o){var t="",e=void 0!==o[5];return o[4]&&(t+="@supports (".concat(o[4],") {")),o[2]&&(t+="@media ".concat(o[2]," {")),e&&(t+="@layer".concat(o[5].length>0?" ".concat(o[5]):""," {")),t+=r(o),e&&(t+="}"),o[2]&&(t+="}"),o[4]&&(t+="}"),t}).join("")},o.i=function(r,t,e,n,a){"string"==typeof r&&(r=[[null,r,void 0]]);var i={};if(e)for(var p=0;p<this.length;p++){var s=this[p][0];null!=s&&(i[s]=!0)}for(var d=0;d<r.length;d++){var u=[].concat(r[d]);e&&i[u[0]]||(void 0!==a&&(void 0===u[5]||(u[1]="@layer".concat(u[5].length>0?" ".concat(u[5]):""," {").concat(u[1],"}")),u[5]=a),t&&(u[2]&&(u[1]="@media ".concat(u[2]," {").concat(u[1],"}")),u[2]=t),n&&(u[4]?(u[1]="@supports (".concat(u[4],") {").concat(u[1],"}"),u[4]=n):u[4]="".concat(n)),o.push(u))}},o}},601(r){r.exports=function(r){return r[1]}},72(r){var o=[];function t(r){for(var t=-1,e=0;e<o.length;e++)if(o[e].identifier===r){t=e;break}return t}function e(r,e){for(var n={},a=[],i=0;i<r.length;i++){var p=r[i],s=e.base?p[0]+e.base:p[0],d=n[s]||0,u="".concat(s," ").concat(d);n[s]=d+1;var c=t(u),l={css:p[1],media:p[2],sourceMap:p[3],supports:p[4],layer:p[5]};if(-1!==c)o[c].references++,o[c].updater(l);else{var f=function(r,o){var t=o.domAPI(o);return t.update(r),function(o){o?(o.css!==r.css||o.media!==r.media||o.sourceMap!==r.sourceMap||o.supports!==r.supports||o.layer!==r.layer)&&t.update(r=o):t.remove()}}(l,e);e.byIndex=i,o.splice(i,0,{identifier:u,updater:f,references:1})}a.push(u)}return a}r.exports=function(r,n){var a=e(r=r||[],n=n||{});return function(r){r=r||[];for(var i=0;i<a.length;i++){var p=t(a[i]);o[p].references--}for(var s=e(r,n),d=0;d<a.length;d++){var u=t(a[d]);0===o[u].references&&(o[u].updater(),o.splice(u,1))}a=s}}},659(r){var o={};r.exports=function(r,t){var e=function(r){if(void 0===o[r]){var t=document.querySelector(r);if(window.HTMLIFrameElement&&t instanceof window.HTMLIFrameElement)try{t=t.contentDocument.head}catch(r){t=null}o[r]=t}return o[r]}(r);if(!e)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");e.appendChild(t)}},540(r){r.exports=function(r){var o=document.createElement("style");return r.setAttributes(o,r.attributes),r.insert(o,r.options),o}},56(r,o,t){r.exports=function(r){var o=t.nc;o&&r.setAttribute("nonce",o)}},206(r){r.exports=function(r){if("u"<typeof document)return{update:function(){},remove:function(){}};var o=r.insertStyleElement(r);return{update:function(t){var e,n,a;e="",t.supports&&(e+="@supports (".concat(t.supports,") {")),t.media&&(e+="@media ".concat(t.media," {")),(n=void 0!==t.layer)&&(e+="@layer".concat(t.layer.length>0?" ".concat(t.layer):""," {")),e+=t.css,n&&(e+="}"),t.media&&(e+="}"),t.supports&&(e+="}"),(a=t.sourceMap)&&"u">typeof btoa&&(e+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(a))))," */")),r.styleTagTransform(e,o,r.options)},remove:function(){var r;null===(r=o).parentNode||r.parentNode.removeChild(r)}}}},113(r){r.exports=function(r,o){if(o.styleSheet)o.styleSheet.cssText=r;else{for(;o.firstChild;)o.removeChild(o.firstChild);o.appendChild(document.createTextNode(r))}}},579(r,o,t){var e=t(72),n=t.n(e),a=t(206),i=t.n(a),p=t(659),s=t.n(p),d=t(56),u=t.n(d),c=t(540),l=t.n(c),f=t(113),v=t.n(f),j=t(475),b={};b.styleTagTransform=v(),b.setAttributes=u(),b.insert=s().bind(null,"head"),b.domAPI=i(),b.insertStyleElement=l(),n()(j.A,b),j.A&&j.A.locals&&j.A.locals}}]);